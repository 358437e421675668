"""The kafka:// backend: the clients (``client``) and replay (``replay``) over a Kafka cluster."""
