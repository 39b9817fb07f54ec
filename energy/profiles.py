"""Hardware energy profiles: per-operation energies with sources, read from TOML.

The shipped table is ``energy/profiles.toml`` (layout documented at its top). Users add
or override profiles with their own files (``load_profiles(extra_files)``, CLI
``--profile-file``): a profile in a later file replaces the one of the same name, and
sources may be added. Every value is validated; errors name the file and the key path,
e.g. ``my.toml: profiles.myacc.ops.mac.pj must be a number >= 0, got 'x'``.

Operations priced (``OP_NAMES``): ``ac`` (accumulate driven by a spike: a synaptic
operation), ``mac``, ``add``, ``mult``, ``comparison`` (ReLU, max-pool), ``nonlinear``
(sigmoid), ``bias_add``, ``neuron_update``, ``spike`` (emission/routing).
A digital profile must price all of them and its memory; a neuromorphic profile prices
what the chip does and names a ``host`` profile for the rest (the direct-encoding
convolution runs on the host CPU).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from neurall_neuro.errors import ConfigError
from neurall_neuro.registry import Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10
    import tomli as tomllib

#: The shipped profile table.
DEFAULT_PROFILE_FILE = Path(__file__).with_name("profiles.toml")

OP_NAMES: tuple[str, ...] = (
    "ac",
    "mac",
    "add",
    "mult",
    "comparison",
    "nonlinear",
    "bias_add",
    "neuron_update",
    "spike",
)
KINDS: tuple[str, ...] = ("digital", "neuromorphic")
_PROFILE_KEYS = (
    "description",
    "kind",
    "word_bits",
    "host",
    "memory_included",
    "ops",
    "memory",
    "extra",
)
_FIGURE_KEYS = ("pj", "source", "note")
_MEMORY_KEYS = ("pj", "bits", "source", "note")


@dataclass(frozen=True)
class Figure:
    """One published (or derived) energy figure: ``pj`` picojoules, its source key and a note.

    Memory figures also give ``bits``: the access size the energy refers to.
    """

    pj: float
    source: str
    note: str = ""
    bits: int | None = None


@dataclass(frozen=True)
class EnergyProfile:
    """Energies of one hardware target (see the module docstring)."""

    name: str
    description: str
    kind: str
    word_bits: int
    ops: Mapping[str, Figure]
    memory_read: Figure | None = None
    memory_write: Figure | None = None
    host: str | None = None
    memory_included: bool = False
    extra: Mapping[str, Figure] = field(default_factory=dict)
    origin: str = ""

    def supports(self, op: str) -> bool:
        return op in self.ops

    def energy(self, op: str) -> float:
        """Picojoules per operation ``op`` (``ConfigError`` if the profile lacks it)."""
        try:
            return self.ops[op].pj
        except KeyError:
            raise ConfigError(
                f"profile {self.name!r} has no energy for {op!r}; it prices: {', '.join(self.ops)}"
            ) from None

    @property
    def read_pj(self) -> float:
        """Picojoules per read of one ``word_bits`` value (0 when memory is included)."""
        return _access(self.memory_read, self.word_bits) if not self.memory_included else 0.0

    @property
    def write_pj(self) -> float:
        """Picojoules per write of one ``word_bits`` value (0 when memory is included)."""
        return _access(self.memory_write, self.word_bits) if not self.memory_included else 0.0

    def sources(self) -> list[str]:
        """Source keys used by this profile's figures."""
        figures = [*self.ops.values(), *self.extra.values()]
        figures += [f for f in (self.memory_read, self.memory_write) if f is not None]
        return sorted({f.source for f in figures})


def _access(figure: Figure | None, word_bits: int) -> float:
    if figure is None or not figure.bits:
        return 0.0
    return figure.pj * word_bits / figure.bits


@dataclass
class ProfileCatalog:
    """All known profiles (a :class:`~neurall_neuro.registry.Registry`) and their sources."""

    profiles: Registry[EnergyProfile]
    sources: dict[str, str]
    files: list[Path]

    def get(self, name: str) -> EnergyProfile:
        return self.profiles.get(name)

    def names(self) -> list[str]:
        return self.profiles.names()

    def select(self, spec: str | Sequence[str]) -> list[EnergyProfile]:
        """Profiles named by ``spec``: ``"all"``, a comma-separated string, or a list."""
        if isinstance(spec, str):
            names = (
                self.names()
                if spec.strip() == "all"
                else [s.strip() for s in spec.split(",") if s.strip()]
            )
        else:
            names = list(spec)
        if not names:
            raise ConfigError(
                f"no profiles selected; valid options: all, {', '.join(self.names())}"
            )
        return [self.get(name) for name in dict.fromkeys(names)]

    def host_of(self, profile: EnergyProfile) -> EnergyProfile | None:
        return self.get(profile.host) if profile.host else None

    def citation(self, key: str) -> str:
        return self.sources.get(key, key)


class _Checker:
    """Validation helpers that name the file and key path in every error."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {path} {message}")

    def table(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a table, got {type(value).__name__}")
        return value

    def keys(self, table: Mapping[str, Any], path: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(
                f"{path}.{unknown[0]}" if path else unknown[0],
                f"is not a valid key; valid keys here: {', '.join(allowed)}",
            )

    def string(self, value: Any, path: str, allow_empty: bool = False) -> str:
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise self.fail(path, f"must be a non-empty string, got {value!r}")
        return value

    def number(self, value: Any, path: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or value != value
        ):
            raise self.fail(path, f"must be a number >= 0, got {value!r}")
        return float(value)

    def positive_int(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(path, f"must be a positive integer, got {value!r}")
        return value

    def figure(
        self, value: Any, path: str, sources: Mapping[str, str], memory: bool = False
    ) -> Figure:
        table = self.table(value, path)
        self.keys(table, path, _MEMORY_KEYS if memory else _FIGURE_KEYS)
        for required in ("pj", "source") + (("bits",) if memory else ()):
            if required not in table:
                raise self.fail(
                    f"{path}.{required}", "is missing (every figure needs pj and source)"
                )
        source = self.string(table["source"], f"{path}.source")
        if source not in sources:
            raise self.fail(
                f"{path}.source",
                f'names unknown source {source!r}; define [sources.{source}] citation = "..." '
                f"or use one of: {', '.join(sorted(sources))}",
            )
        return Figure(
            pj=self.number(table["pj"], f"{path}.pj"),
            source=source,
            note=self.string(table.get("note", ""), f"{path}.note", allow_empty=True),
            bits=self.positive_int(table["bits"], f"{path}.bits") if memory else None,
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"profile file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _parse_sources(data: Mapping[str, Any], check: _Checker) -> dict[str, str]:
    sources: dict[str, str] = {}
    for key, value in check.table(data.get("sources", {}), "sources").items():
        table = check.table(value, f"sources.{key}")
        check.keys(table, f"sources.{key}", ("citation",))
        if "citation" not in table:
            raise check.fail(f"sources.{key}.citation", "is missing")
        sources[key] = check.string(table["citation"], f"sources.{key}.citation")
    return sources


def _parse_profile(
    name: str, value: Any, check: _Checker, sources: Mapping[str, str]
) -> EnergyProfile:
    path = f"profiles.{name}"
    table = check.table(value, path)
    check.keys(table, path, _PROFILE_KEYS)
    kind = table.get("kind")
    if kind not in KINDS:
        raise check.fail(f"{path}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if "word_bits" not in table:
        raise check.fail(f"{path}.word_bits", "is missing (bits per value moved to/from memory)")
    ops_table = check.table(table.get("ops", {}), f"{path}.ops")
    check.keys(ops_table, f"{path}.ops", OP_NAMES)
    ops = {op: check.figure(v, f"{path}.ops.{op}", sources) for op, v in ops_table.items()}
    memory_table = check.table(table.get("memory", {}), f"{path}.memory")
    check.keys(memory_table, f"{path}.memory", ("read", "write"))
    memory = {
        k: check.figure(v, f"{path}.memory.{k}", sources, memory=True)
        for k, v in memory_table.items()
    }
    extra_table = check.table(table.get("extra", {}), f"{path}.extra")
    extra = {k: check.figure(v, f"{path}.extra.{k}", sources) for k, v in extra_table.items()}
    included = table.get("memory_included", False)
    if not isinstance(included, bool):
        raise check.fail(f"{path}.memory_included", f"must be true or false, got {included!r}")
    if included and memory:
        raise check.fail(f"{path}.memory", "contradicts memory_included = true; drop one of them")
    if not included and set(memory) != {"read", "write"}:
        raise check.fail(
            f"{path}.memory", "needs both read and write (or set memory_included = true)"
        )
    host = table.get("host")
    if host is not None:
        host = check.string(host, f"{path}.host")
        if host == name:
            raise check.fail(f"{path}.host", "cannot name the profile itself")
    if kind == "digital":
        missing = [op for op in OP_NAMES if op not in ops]
        if missing:
            raise check.fail(
                f"{path}.ops.{missing[0]}",
                f"is missing; a digital profile prices every op ({', '.join(OP_NAMES)})",
            )
    elif "ac" not in ops or "neuron_update" not in ops:
        raise check.fail(
            f"{path}.ops", "of a neuromorphic profile needs at least ac and neuron_update"
        )
    if any(op not in ops for op in OP_NAMES) and host is None:
        raise check.fail(
            f"{path}.host", "is missing; name a profile that prices the ops this one lacks"
        )
    return EnergyProfile(
        name=name,
        description=check.string(table.get("description", name), f"{path}.description"),
        kind=kind,
        word_bits=check.positive_int(table["word_bits"], f"{path}.word_bits"),
        ops=ops,
        memory_read=memory.get("read"),
        memory_write=memory.get("write"),
        host=host,
        memory_included=included,
        extra=extra,
        origin=check.origin,
    )


def parse_profiles(
    data: Mapping[str, Any], origin: str, known_sources: Mapping[str, str] | None = None
) -> tuple[dict[str, EnergyProfile], dict[str, str]]:
    """Validate one parsed TOML document; returns ``(profiles, sources)`` it defines."""
    check = _Checker(origin)
    check.keys(data, "", ("sources", "profiles"))
    sources = {**dict(known_sources or {}), **_parse_sources(data, check)}
    profiles = {
        name: _parse_profile(name, value, check, sources)
        for name, value in check.table(data.get("profiles", {}), "profiles").items()
    }
    return profiles, sources


@lru_cache(maxsize=1)
def _shipped() -> tuple[dict[str, EnergyProfile], dict[str, str]]:
    return parse_profiles(_read_toml(DEFAULT_PROFILE_FILE), DEFAULT_PROFILE_FILE.name)


def load_profiles(extra_files: Sequence[str | Path] = ()) -> ProfileCatalog:
    """The shipped profiles plus those of ``extra_files`` (later files override earlier ones)."""
    shipped, shipped_sources = _shipped()
    profiles = dict(shipped)
    sources = dict(shipped_sources)
    files = [DEFAULT_PROFILE_FILE]
    for file in extra_files:
        path = Path(file)
        defined, sources = parse_profiles(_read_toml(path), str(path), sources)
        profiles.update(defined)
        files.append(path)
    for profile in profiles.values():
        if profile.host is None:
            continue
        host = profiles.get(profile.host)
        if host is None:
            raise ConfigError(
                f"{profile.origin}: profiles.{profile.name}.host names unknown profile {profile.host!r}; "
                f"valid options: {', '.join(sorted(profiles))}"
            )
        missing = [op for op in OP_NAMES if op not in profile.ops and op not in host.ops]
        if missing:
            raise ConfigError(
                f"{profile.origin}: profiles.{profile.name}.host {profile.host!r} does not price "
                f"{', '.join(missing)}; a host must price what the profile lacks"
            )
    registry: Registry[EnergyProfile] = Registry("energy profile")
    for name in sorted(profiles):
        registry.register(name, profiles[name])
    return ProfileCatalog(registry, sources, files)
