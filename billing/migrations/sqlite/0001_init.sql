-- vigil-billing schema, SQLite dialect. Keep in step with ../postgres/0001_init.sql.
-- Integers are 64-bit everywhere; money is in micro-units of the tariff currency; times are
-- Unix seconds; flags are 0/1.

CREATE TABLE tariffs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    currency TEXT NOT NULL,
    first_increment BIGINT NOT NULL,
    next_increment BIGINT NOT NULL,
    connect_fee BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE tariff_rates (
    tariff_id BIGINT NOT NULL REFERENCES tariffs(id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    rate_per_minute BIGINT NOT NULL,
    PRIMARY KEY (tariff_id, prefix)
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    tariff_id BIGINT REFERENCES tariffs(id)
);

CREATE TABLE product_features (
    product_id BIGINT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    feature TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    editable BIGINT NOT NULL,
    PRIMARY KEY (product_id, feature)
);

CREATE TABLE did_batches (
    name TEXT PRIMARY KEY,
    pricing TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE dids (
    number TEXT PRIMARY KEY,
    batch TEXT NOT NULL REFERENCES did_batches(name),
    pricing TEXT NOT NULL,
    account_id TEXT,
    imported_at BIGINT NOT NULL,
    assigned_at BIGINT
);
CREATE INDEX dids_free ON dids (pricing, number) WHERE account_id IS NULL;

CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    contacts_version BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    customer_id BIGINT REFERENCES customers(id),
    product_id BIGINT NOT NULL REFERENCES products(id),
    mobile TEXT NOT NULL,
    mobile_hash TEXT NOT NULL,
    alias TEXT NOT NULL,
    email TEXT,
    first_name TEXT,
    last_name TEXT,
    extension TEXT,
    extension_name TEXT,
    sip_username TEXT NOT NULL UNIQUE,
    sip_domain TEXT NOT NULL,
    sip_password TEXT NOT NULL,
    ha1 TEXT NOT NULL,
    ha1b TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0,
    forwarding TEXT NOT NULL DEFAULT '{}',
    follow_me TEXT NOT NULL DEFAULT '{}',
    recording BIGINT NOT NULL DEFAULT 0,
    contact_seq BIGINT NOT NULL DEFAULT 0,
    removed BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_alias ON accounts (alias) WHERE removed = 0;
CREATE INDEX accounts_mobile_hash ON accounts (mobile_hash) WHERE removed = 0;
CREATE INDEX accounts_customer_seq ON accounts (customer_id, contact_seq);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE captchas (
    id TEXT PRIMARY KEY,
    answer_mac TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE otps (
    mobile TEXT NOT NULL,
    purpose TEXT NOT NULL,
    code_mac TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (mobile, purpose)
);

CREATE TABLE rate_events (
    scope TEXT NOT NULL,
    rkey TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX rate_events_key ON rate_events (scope, rkey, at);

CREATE TABLE cdrs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    kind TEXT NOT NULL,
    peer TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    duration BIGINT NOT NULL,
    billed_seconds BIGINT NOT NULL,
    charge BIGINT NOT NULL,
    rate_prefix TEXT,
    rated BIGINT NOT NULL,
    UNIQUE (call_id, account_id)
);
CREATE INDEX cdrs_account ON cdrs (account_id, id);

CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    call_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX recordings_account ON recordings (account_id, created_at);

-- A default tariff and product so that a fresh install can sign users up at once.
INSERT INTO tariffs (name, currency, first_increment, next_increment, connect_fee)
    VALUES ('default', 'USD', 60, 60, 0);
INSERT INTO products (name, tariff_id) VALUES ('default', (SELECT id FROM tariffs WHERE name = 'default'));
INSERT INTO product_features (product_id, feature, enabled, editable)
    SELECT id, 'call_forwarding', 1, 1 FROM products WHERE name = 'default';
INSERT INTO product_features (product_id, feature, enabled, editable)
    SELECT id, 'call_recording', 1, 1 FROM products WHERE name = 'default';
INSERT INTO product_features (product_id, feature, enabled, editable)
    SELECT id, 'follow_me', 1, 1 FROM products WHERE name = 'default';
