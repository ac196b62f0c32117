-- SIP passwords move to AES-256-GCM at rest (src/secrets.rs). Keep in step with
-- ../postgres/0002_sealed_sip_passwords.sql.
--
-- The key is not available to SQL, so the move takes three steps: this migration adds the sealed
-- column and the key check; the service then seals every plaintext row in Rust
-- (secrets::seal_legacy_passwords, run by db::Db::open between the migrations); 0003 drops the
-- plaintext column and refuses to run while any row is unsealed.

ALTER TABLE accounts ADD COLUMN sip_password_sealed BLOB;

-- One row: a fixed marker sealed under the key the database was first opened with, so that a
-- start with another key fails at once with a clear message.
CREATE TABLE secret_key_check (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    sealed BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
