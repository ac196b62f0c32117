-- The load image: the columns that a PUT sets, packed for start-up (src/store/packed.rs
-- describes the format and why). Written by every upsert; NULL until then for rows stored
-- before this migration (opening the store fills those in).
ALTER TABLE devices ADD COLUMN load_image BLOB;

-- Finds the rows that still need an image without scanning the table; empty in steady state.
CREATE INDEX devices_unimaged ON devices (device_id) WHERE load_image IS NULL;

-- The image is a copy: an UPDATE that changes an imaged column without writing a new image
-- (a dead push token dropped, or any later statement that forgets it) clears it, and the row
-- is loaded from its columns until the store refills the image at its next opening.
CREATE TRIGGER devices_load_image_stale
AFTER UPDATE OF device_id, binding_id, contact_token, username, auth_username, password_enc,
    domain, outbound_proxy, transport, display_name, push_kind, push_enc, push_topic,
    push_env, app_id, app_version, expires, secret_hash, body_hash ON devices
WHEN NEW.load_image IS OLD.load_image AND NEW.load_image IS NOT NULL
BEGIN
    UPDATE devices SET load_image = NULL WHERE rowid = NEW.rowid;
END;
