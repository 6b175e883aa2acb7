"""Streaming: the bundled broker, topics, the relay from the event log to Kafka,
the emitter clients and (elsewhere in this package) the Faust processors."""
