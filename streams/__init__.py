"""Real-time delivery without the web framework: who may see which event, the broker that hands new events to open
streams, and the watchers that learn of other processes' commits. The edge turns them into responses."""
