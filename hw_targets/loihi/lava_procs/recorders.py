"""Lava processes that record spikes and voltages straight into ``numpy.memmap`` files.

Lava's ``Var.get()`` moves data element by element through the runtime service (about
0.2 ms per value here: reading one 200x66x3x16 ring buffer took 2 minutes), so the
lava-sim target records through these processes instead: each step the model writes
the received vector (or the referenced Var) into row ``time_step - 1`` of a file the
host created beforehand and reads after the run. They only observe; they feed nothing
back into the network. Absolute imports only: Lava's model discovery executes this
file as a top-level module.
"""

from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class SpikeRecorder(AbstractProcess):
    """Writes the vector arriving at ``a_in`` each step into ``path`` (``[steps, *shape]``)."""

    def __init__(
        self, *, shape: tuple[int, ...], path: str, steps: int, dtype: str = "uint8"
    ) -> None:
        super().__init__(shape=shape, path=path, steps=steps, dtype=dtype)
        self.a_in = InPort(shape=shape)


class VarRecorder(AbstractProcess):
    """Writes the value of ``var`` after every step into ``path`` (``[steps, *var.shape]``)."""

    def __init__(self, *, var: Var, path: str, steps: int, dtype: str = "float64") -> None:
        super().__init__(shape=var.shape, path=path, steps=steps, dtype=dtype)
        self.ref = RefPort(var.shape)
        self.ref.connect_var(var)


def _open(proc_params: ty.Any) -> np.memmap:
    return np.memmap(
        proc_params["path"],
        dtype=proc_params["dtype"],
        mode="r+",
        shape=(int(proc_params["steps"]), *proc_params["shape"]),
    )


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PySpikeRecorderModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def __init__(self, proc_params: ty.Any) -> None:
        super().__init__(proc_params)
        self._data = _open(proc_params)

    def run_spk(self) -> None:
        value = self.a_in.recv()
        t = self.time_step - 1
        if 0 <= t < self._data.shape[0]:
            self._data[t] = value
            if t == self._data.shape[0] - 1:
                self._data.flush()


@implements(proc=VarRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PyVarRecorderModel(PyLoihiProcessModel):
    ref: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, float)

    def __init__(self, proc_params: ty.Any) -> None:
        super().__init__(proc_params)
        self._data = _open(proc_params)

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        value = self.ref.read()
        t = self.time_step - 1
        if 0 <= t < self._data.shape[0]:
            self._data[t] = value
            if t == self._data.shape[0] - 1:
                self._data.flush()
