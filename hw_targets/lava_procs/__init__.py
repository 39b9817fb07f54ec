"""Small Lava processes used by the lava-sim target (recorders).

They live in their own package because Lava's compiler discovers process models by
importing every module in the directory of a process's module; this package holds only
Lava process definitions, so that scan stays cheap and side-effect free.
"""
