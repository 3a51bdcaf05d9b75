"""The online store's HTTP API: catalog, carts and checkout (emits OrderPlaced / StandingOrderRequested)."""
