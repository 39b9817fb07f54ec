"""Robustness of NIR file reading: one clear, typed error per kind of broken file."""

from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest

from conversion.nir_io import read_nir, write_nir
from conversion.nir_runtime import load_nir
from neurall_neuro.errors import GraphFileError, UnsupportedNodeError


def small_graph() -> nir.NIRGraph:
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Affine(weight=np.ones((4, 3), np.float32), bias=np.zeros(4, np.float32)),
        "lif": nir.LIF(
            tau=np.full(4, 2e-4),
            r=np.ones(4),
            v_leak=np.zeros(4),
            v_threshold=np.ones(4),
            metadata={"dt": 1e-4},
        ),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.nir"
    write_nir(small_graph(), path)
    return path


def set_edges(path, edges):
    with h5py.File(path, "r+") as f:
        del f["node/edges"]
        f["node"].create_dataset("edges", data=np.array(edges, dtype="S"))


def test_good_file_reads_and_runs(good_file):
    graph = read_nir(good_file)
    assert sorted(graph.nodes) == ["fc", "input", "lif", "output"]
    assert load_nir(good_file).dt == 1e-4


def test_missing_file(tmp_path):
    with pytest.raises(GraphFileError, match="not found"):
        read_nir(tmp_path / "nope.nir")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.nir"
    path.write_text("this is not a graph\n")
    with pytest.raises(GraphFileError, match="not an HDF5 file"):
        read_nir(path)


def test_truncated_file(good_file):
    data = good_file.read_bytes()
    good_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphFileError, match="truncated or corrupt|not an HDF5"):
        read_nir(good_file)


def test_hdf5_without_graph(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(GraphFileError, match="no 'node' group"):
        read_nir(path)


def test_unknown_node_type(good_file):
    with h5py.File(good_file, "r+") as f:
        del f["node/nodes/lif/type"]
        f["node/nodes/lif"].create_dataset("type", data="Izhikevich", dtype=h5py.string_dtype())
    with pytest.raises(
        UnsupportedNodeError, match=r"'lif'.*'Izhikevich'.*supported node types: .*CubaLIF"
    ):
        read_nir(good_file)


def test_malformed_node_field(good_file):
    with h5py.File(good_file, "r+") as f:
        del f["node/nodes/fc/weight"]
    with pytest.raises(GraphFileError, match=r"node 'fc' \(Affine\) is malformed"):
        read_nir(good_file)


def test_missing_edge_list(good_file):
    with h5py.File(good_file, "r+") as f:
        del f["node/edges"]
    with pytest.raises(GraphFileError, match="no 'edges'"):
        read_nir(good_file)


def test_missing_edge(good_file):
    set_edges(good_file, [("input", "fc"), ("lif", "output")])
    with pytest.raises(GraphFileError, match=r"'lif'.*cannot be reached|'fc'.*no outgoing edge"):
        read_nir(good_file)


def test_dangling_edge(good_file):
    set_edges(good_file, [("input", "fc"), ("fc", "lif"), ("lif", "output"), ("lif", "ghost")])
    with pytest.raises(
        GraphFileError, match=r"'ghost' is not a node of the graph \(dangling edge\)"
    ):
        read_nir(good_file)


def test_shape_mismatch(good_file):
    with h5py.File(good_file, "r+") as f:
        del f["node/nodes/fc/weight"]
        f["node/nodes/fc"].create_dataset("weight", data=np.ones((4, 5), np.float32))
    with pytest.raises(
        GraphFileError, match=r"shape mismatch on edge 'input' -> 'fc'.*\(3,\).*\(5,\)"
    ):
        read_nir(good_file)


def test_mismatched_branch_shapes():
    graph = small_graph()
    graph.nodes["other"] = nir.Affine(
        weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32)
    )
    graph.edges += [("input", "other"), ("other", "lif")]
    with pytest.raises(GraphFileError, match=r"node 'lif'.*\(4,\).*\(2,\).*summed"):
        load_nir(graph)


def test_write_refuses_torch_tensors_and_none_nodes(tmp_path):
    import torch

    graph = small_graph()
    graph.nodes["fc"].weight = torch.ones(4, 3)
    with pytest.raises(GraphFileError, match="torch tensor"):
        write_nir(graph, tmp_path / "x.nir")
    graph = small_graph()
    graph.nodes["fc"] = None
    with pytest.raises(GraphFileError, match="None"):
        write_nir(graph, tmp_path / "x.nir")
    assert list(tmp_path.iterdir()) == []
