"""What a client may ask `argen serve` for: the fields of a run, their defaults and limits, checked before any
work, with one-line messages (422 for a value out of its limits, 404 for an unknown method)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from argen.sample import DEFAULT_SETTINGS, GUIDANCE_SETTINGS
from argen.serve.methods import Method

# Bounds that keep one request small on a CPU; the page reads them from /api/methods.
LIMITS = {
    "images": 8,
    "guidance": 20.0,
    "temperature": 5.0,
    "seed": 2**53,  # 2**53: exact in JavaScript too
    "speculative": 32,
}
DEFAULTS = {
    "class": 0,
    "images": 1,
    "seed": 0,
    "guidance": None,  # None: the method's own (Method.sampling: recorded when it was shipped)
    "temperature": None,
    "top_k": 0,
    "top_p": 1.0,
    "speculative": 0,
}


class RequestError(Exception):
    """A request refused: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RunRequest:
    method: str
    label: int
    images: int
    seed: int
    guidance: float | None  # None: the method's own
    temperature: float | None
    top_k: int
    top_p: float
    speculative: int = 0  # speculative Jacobi decoding's window of steps (0 = off)

    def sampling_options(self, own: dict[str, Any]) -> dict[str, Any]:
        """The SamplingOptions fields of this run; the guidance and temperature it leaves unset are the method's
        `own` (`Method.sampling`), each group whole: Prologue's split guidance stays split."""
        options = dict(own)
        if self.guidance is not None:  # a constant, replacing the method's guidance with its ramp
            options.update({name: DEFAULT_SETTINGS[name] for name in GUIDANCE_SETTINGS}, guidance=self.guidance)
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return {**options, "top_k": self.top_k, "top_p": self.top_p, "speculative": self.speculative}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _shown(value: Any) -> str:
    """A client's value in a message: its repr, cut short (a 4,000-digit seed stays one short line)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(body: dict, name: str, integer: bool, low: float, high: float, low_open: bool = False) -> Any:
    value = body.get(name, DEFAULTS[name])
    kind = int if integer else (int, float)
    # bool is an int in Python but not a number here; NaN and infinities are refused (an int is always finite, and
    # math.isfinite of a huge one overflows).
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise RequestError(422, f"{name} must be {'an integer' if integer else 'a number'}, got {_shown(value)}")
    if value < low or value > high or (low_open and value == low):
        raise RequestError(422, f"{name} must be in {'(' if low_open else '['}{low}, {high}], got {_shown(value)}")
    return value


def _optional_float(body: dict, name: str, low: float, high: float, low_open: bool = False) -> float | None:
    """A real field that may be left out (or null): None, the method's own setting."""
    return None if body.get(name) is None else float(_number(body, name, False, low, high, low_open))


def parse_run(body: Any, methods: dict[str, Method]) -> RunRequest:
    """The run a JSON body asks for, or RequestError."""
    if not isinstance(body, dict):
        raise RequestError(422, "the body must be a JSON object")
    unknown = sorted(set(body) - {"method", *DEFAULTS})
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(unknown)}; known: method, {', '.join(DEFAULTS)}")
    name = body.get("method")
    if not isinstance(name, str):
        raise RequestError(422, f"method must be a name, got {_shown(name)}; known: {', '.join(methods)}")
    if name not in methods:
        raise RequestError(404, f"unknown method {_shown(name)}; known: {', '.join(methods)}")
    method = methods[name]
    label = body.get("class", DEFAULTS["class"])
    names = method.class_names
    if isinstance(label, str) and label in names:
        label = names.index(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(names):
        raise RequestError(
            422,
            f"unknown class {_shown(label)} for {name}; classes: 0 to {len(names) - 1} or a name ({', '.join(names)})",
        )
    return RunRequest(
        method=name,
        label=label,
        images=_number(body, "images", True, 1, LIMITS["images"]),
        seed=_number(body, "seed", True, 0, LIMITS["seed"]),
        guidance=_optional_float(body, "guidance", 0.0, LIMITS["guidance"]),
        temperature=_optional_float(body, "temperature", 0.0, LIMITS["temperature"], low_open=True),
        top_k=_number(body, "top_k", True, 0, method.pipeline.layout.grid_vocab),
        top_p=float(_number(body, "top_p", False, 0.0, 1.0, low_open=True)),
        speculative=_number(body, "speculative", True, 0, LIMITS["speculative"]),
    )
