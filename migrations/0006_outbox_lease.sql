-- A writer publishes the outbox rows of its transaction itself once it has
-- committed (sl_relay_publish), and marks them sent when Kafka has them.
-- Until relay_after the relay leaves such a row to its writer; after it, the
-- writer stopped before the row was delivered, or Kafka refused it, and the
-- relay publishes it. A row whose relay_after is NULL is the relay's at once.
ALTER TABLE outbox ADD COLUMN relay_after timestamptz;
