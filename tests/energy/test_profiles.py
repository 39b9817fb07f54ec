"""The shipped profile table (values and sources from DESIGN.md), user files, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from energy.profiles import DEFAULT_PROFILE_FILE, OP_NAMES, load_profiles
from neurall_neuro.errors import ConfigError, UnknownNameError

#: DESIGN.md "Energy accounting facts" (pJ): profile -> op -> (value, source key).
DESIGN_FIGURES = {
    "45nm-fp32": {
        "add": (0.9, "horowitz2014"),
        "mult": (3.7, "horowitz2014"),
        "mac": (4.6, "horowitz2014"),
    },
    "45nm-int8": {
        "add": (0.03, "horowitz2014"),
        "mult": (0.2, "horowitz2014"),
        "mac": (0.23, "horowitz2014"),
    },
    "loihi": {
        "ac": (23.6, "davies2018"),
        "neuron_update": (81.0, "davies2018"),
        "spike": (1.7, "davies2018"),
    },
    "spinnaker": {"ac": (13300.0, "hoppner2019"), "neuron_update": (26000.0, "hoppner2019")},
    "spinnaker2": {"ac": (450.0, "hoppner2019"), "neuron_update": (2190.0, "hoppner2019")},
    "truenorth": {"ac": (26.0, "merolla2014")},
}


def test_shipped_values_are_the_design_figures() -> None:
    catalog = load_profiles()
    for name, figures in DESIGN_FIGURES.items():
        profile = catalog.get(name)
        for op, (pj, source) in figures.items():
            assert (profile.ops[op].pj, profile.ops[op].source) == (pj, source), (name, op)
    loihi = catalog.get("loihi")
    assert {k: f.pj for k, f in loihi.extra.items()} == {
        "synaptic_update": 120.0, "neuron_update_inactive": 52.0, "tile_hop_min": 3.0, "tile_hop_max": 4.0,
    }  # fmt: skip
    assert catalog.get("45nm-int8").extra["int32_add"].pj == 0.1
    assert catalog.get("45nm-int8").extra["int32_mult"].pj == 3.1
    sram, dram = catalog.get("45nm-fp32"), catalog.get("45nm-fp32-dram")
    assert (sram.memory_read.pj, sram.memory_read.bits, sram.read_pj) == (5.0, 32, 5.0)
    assert dram.read_pj == 640.0
    assert catalog.get("45nm-int8").read_pj == 5.0 * 8 / 32  # an 8-bit value of a 32-bit word


def test_every_figure_cites_a_source_and_digital_profiles_price_everything() -> None:
    catalog = load_profiles()
    for name in catalog.names():
        profile = catalog.get(name)
        for key in profile.sources():
            assert catalog.citation(key) != key and len(catalog.citation(key)) > 20
        if profile.kind == "digital":
            assert set(profile.ops) == set(OP_NAMES)
            assert profile.ops["ac"].pj == profile.ops["add"].pj  # ACs priced as adds
        else:
            assert profile.memory_included and catalog.host_of(profile).kind == "digital"
    text = DEFAULT_PROFILE_FILE.read_text()
    for citation in ("ISSCC 2014", "IEEE Micro", "Science 345", "1903.08941"):
        assert citation in text


def test_select_profiles() -> None:
    catalog = load_profiles()
    assert [p.name for p in catalog.select("loihi, 45nm-int8")] == ["loihi", "45nm-int8"]
    assert len(catalog.select("all")) == len(catalog.names())
    with pytest.raises(UnknownNameError, match="valid options: 45nm-fp32"):
        catalog.select("loihi2")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


USER = """
[sources.mychip]
citation = "Our chip measured at 0.8 V, internal report 2025"

[profiles.mychip]
description = "our accelerator"
kind = "neuromorphic"
word_bits = 8
host = "45nm-int8"
memory_included = true
[profiles.mychip.ops]
ac = { pj = 2.0, source = "mychip" }
neuron_update = { pj = 10.0, source = "mychip", note = "measured" }

[profiles.loihi]
description = "Loihi, overridden"
kind = "neuromorphic"
word_bits = 8
host = "45nm-fp32"
memory_included = true
[profiles.loihi.ops]
ac = { pj = 20.0, source = "davies2018" }
neuron_update = { pj = 50.0, source = "davies2018" }
"""


def test_user_file_adds_and_overrides(tmp_path: Path) -> None:
    catalog = load_profiles([_write(tmp_path, USER)])
    assert catalog.get("mychip").ops["ac"].pj == 2.0
    assert catalog.get("loihi").ops["ac"].pj == 20.0
    assert catalog.get("45nm-fp32").ops["mac"].pj == 4.6  # untouched
    assert "mychip" in catalog.sources


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        (
            "pj = 2.0, source",
            "pj = -1, source",
            r"profiles\.mychip\.ops\.ac\.pj must be a number >= 0",
        ),
        ("pj = 2.0, source", "pj = 'x', source", r"profiles\.mychip\.ops\.ac\.pj must be a number"),
        (
            "ac = {",
            "acc = {",
            r"profiles\.mychip\.ops\.acc is not a valid key; valid keys here: ac, mac",
        ),
        (
            'source = "mychip" }\nneuron',
            'source = "nobody" }\nneuron',
            r"ops\.ac\.source names unknown source 'nobody'",
        ),
        (
            'host = "45nm-int8"',
            'host = "gpu"',
            r"profiles\.mychip\.host names unknown profile 'gpu'",
        ),
        ('host = "45nm-int8"\n', "", r"profiles\.mychip\.host is missing"),
        (
            'kind = "neuromorphic"\nword_bits = 8\nhost = "45nm-int8"',
            'kind = "analog"\nword_bits = 8\nhost = "45nm-int8"',
            r"profiles\.mychip\.kind must be one of digital, neuromorphic",
        ),
        (
            "memory_included = true\n[profiles.mychip.ops]",
            "[profiles.mychip.ops]",
            r"profiles\.mychip\.memory needs both read and write",
        ),
        (
            'description = "our accelerator"',
            'descripton = "x"',
            r"profiles\.mychip\.descripton is not a valid key",
        ),
    ],
)
def test_validation_errors_name_the_bad_key(
    tmp_path: Path, replace: str, by: str, message: str
) -> None:
    assert replace in USER
    path = _write(tmp_path, USER.replace(replace, by, 1))
    with pytest.raises(ConfigError, match=message) as info:
        load_profiles([path])
    assert str(path) in str(info.value)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile file not found"):
        load_profiles([tmp_path / "missing.toml"])
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_profiles([_write(tmp_path, "[profiles\n")])
    digital = (
        '[profiles.x]\nkind = "digital"\nword_bits = 8\n[profiles.x.ops]\nmac = { pj = 1, source = "assumption" }\n'
        '[profiles.x.memory]\nread = { pj = 1, bits = 8, source = "assumption" }\n'
        'write = { pj = 1, bits = 8, source = "assumption" }\n'
    )
    with pytest.raises(
        ConfigError, match=r"profiles\.x\.ops\.ac is missing; a digital profile prices every op"
    ):
        load_profiles([_write(tmp_path, digital)])
