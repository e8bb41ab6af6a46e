"""The ground every plug-in family stands on and that imports none of them: the training engine and its
hook port (``engine``), configuration errors (``errors``), in-memory images and their helpers
(``images``), and the network introspection attacks and defenses share (``network``)."""
