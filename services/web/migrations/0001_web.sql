-- The web service's own tables: who may sign in, sign-in links, sessions. No business data: carts,
-- orders, accounts and tasks stay with the services that own them and are read through their APIs.

-- People who may sign in, managed by an operator (console or `salesbus person`). A person acts as
-- one role for one subject: a customer's buyer for that customer id, a salesperson as their id.
CREATE TABLE people (
    email       text PRIMARY KEY CHECK (email = lower(email) AND length(email) <= 254),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role        text NOT NULL CHECK (role IN ('customer', 'salesperson', 'operator', 'warehouse')),
    subject     text NOT NULL CHECK (length(subject) BETWEEN 1 AND 64),
    language    text NOT NULL CHECK (language IN ('en', 'es', 'fr', 'pl', 'vi', 'hr')),
    time_zone   text NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Every sign-in request, also for addresses that may not sign in: the rate limit counts them
-- per address and per client without telling the client whether the address is known.
CREATE TABLE signin_requests (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL,
    client      text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX signin_requests_by_email ON signin_requests (email, at);
CREATE INDEX signin_requests_by_client ON signin_requests (client, at);

-- One-time sign-in links: only the SHA-256 of the token is kept; used_at makes it single-use.
CREATE TABLE signin_tokens (
    token_hash  text PRIMARY KEY,
    email       text NOT NULL REFERENCES people (email) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

-- Sessions: the cookie carries a random id, the table its SHA-256. An anonymous session (no
-- person) exists to hold the CSRF token of the sign-in form. api_key is the key issued at
-- sign-in for this person's role and subject, so the services' APIs enforce what they may see;
-- it is revoked from the keys file at sign-out and expiry.
CREATE TABLE sessions (
    session_hash text PRIMARY KEY,
    email        text REFERENCES people (email) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    api_key      text,
    language     text,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
