-- The catalog the store sells from; the cart is its owner and announces changes as ProductChanged.
CREATE TABLE products (
    sku          text PRIMARY KEY,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    unit_price   numeric(14,2) NOT NULL CHECK (unit_price >= 0),
    currency     char(3) NOT NULL,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- A customer's cart. Prices are never stored on lines: totals always come from the catalog.
CREATE TABLE carts (
    cart_id            text PRIMARY KEY,
    customer_id        text NOT NULL,
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'checked_out')),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    checked_out_at     timestamptz,
    order_id           text,
    standing_order_id  text
);
CREATE INDEX carts_by_customer ON carts (customer_id, created_at DESC);

CREATE TABLE cart_lines (
    cart_id   text NOT NULL REFERENCES carts (cart_id) ON DELETE CASCADE,
    sku       text NOT NULL REFERENCES products (sku),
    quantity  integer NOT NULL CHECK (quantity > 0),
    added_at  timestamptz NOT NULL,
    PRIMARY KEY (cart_id, sku)
);

-- The first answer to each checkout, per customer and Idempotency-Key, so a retry (lost
-- response, double click) gets the same order instead of a second one.
CREATE TABLE checkouts (
    customer_id      text NOT NULL,
    idempotency_key  text NOT NULL,
    fingerprint      text NOT NULL,
    cart_id          text NOT NULL REFERENCES carts (cart_id),
    status_code      integer NOT NULL,
    response         jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (customer_id, idempotency_key)
);
