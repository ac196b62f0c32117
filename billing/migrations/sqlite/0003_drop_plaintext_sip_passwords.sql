-- Drops the plaintext SIP password column once every row is sealed (see 0002). db::Db::open
-- seals the rows before it applies this migration; the guard makes any other way of applying it
-- (a migration tool run by hand) fail here instead of dropping passwords that were never sealed.
-- Keep in step with ../postgres/0003_drop_plaintext_sip_passwords.sql.

CREATE TEMPORARY TABLE seal_guard (unsealed BIGINT NOT NULL CHECK (unsealed = 0));
INSERT INTO seal_guard SELECT COUNT(*) FROM accounts WHERE sip_password_sealed IS NULL;
DROP TABLE seal_guard;

ALTER TABLE accounts DROP COLUMN sip_password;
