-- Devices handed over by their apps: the SIP account, push targets and intake bookkeeping.
-- Passwords and push tokens are AES-256-GCM sealed (nonce || ciphertext || tag) by the
-- gateway before they reach this table; the key never does.
CREATE TABLE devices (
    device_id      TEXT PRIMARY KEY,
    binding_id     BIGINT NOT NULL UNIQUE,
    contact_token  TEXT NOT NULL UNIQUE,
    username       TEXT NOT NULL,
    auth_username  TEXT,
    password_enc   BLOB NOT NULL,
    domain         TEXT NOT NULL,
    outbound_proxy TEXT,
    transport      TEXT,
    display_name   TEXT,
    push_kind      TEXT NOT NULL,
    push_enc       BLOB NOT NULL,
    push_topic     TEXT,
    push_env       TEXT,
    app_id         TEXT NOT NULL,
    app_version    TEXT NOT NULL,
    expires        BIGINT NOT NULL,
    secret_hash    BLOB NOT NULL,
    body_hash      BLOB NOT NULL,
    last_put_ms    BIGINT NOT NULL,
    state          TEXT NOT NULL,
    last_status    BIGINT NOT NULL DEFAULT 0
);
-- The idle sweep scans by last PUT time.
CREATE INDEX devices_last_put ON devices (last_put_ms);
