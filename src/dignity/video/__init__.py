"""Video: streaming decoding with PyAV (:mod:`.decode`) and Meta-compatible vPDQ hashing
(:mod:`.vpdq`); the CLI, API and bank wiring come later."""
