"""The scripted session behind `make demo` / `salesbus demo`: one module per flow."""
