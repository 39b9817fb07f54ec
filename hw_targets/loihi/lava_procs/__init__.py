"""Small Lava processes used by the lava-sim target (recorders).

They live in their own package because Lava's compiler discovers process models by
executing every module in the directory of a process's module (and of its siblings in
the parent package) as a top-level module; this package holds only Lava process
definitions, so that scan stays cheap and side-effect free (placed directly in
``hw_targets/loihi/`` it would execute every module of the chip package).
"""
