"""Getting alerts to the operations centre: MQTT client, publisher over the outbox, acks."""
