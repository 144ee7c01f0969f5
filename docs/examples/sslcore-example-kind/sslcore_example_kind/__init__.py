"""An sslcore plugin package that adds a component kind, ``noise``, and a method, ``noisy_pair``, that uses it."""
