"""Networks, one file per role.

``processors``: the processors P (MPNN, Deep Sets, MLP) and ``ModelSpec``, which rebuilds one;
``atari_abstract`` / ``atari_natural``: the Atari RAM and pixel models around P; ``balls``: the
bouncing-balls models, built from ``slot_attention`` (encoder) and ``broadcast_decoder``;
``atari_policy``: the RAM Q-network behind the ``checkpoint`` policy heads.
"""
