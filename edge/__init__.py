"""The edge: everything that touches HTTP, from the connection to the handler and back, error rendering included."""
