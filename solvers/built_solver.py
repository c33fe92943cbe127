"""What may be set on a solver after it is built, how it pickles, and copies that share its
built state (:class:`BuiltSolver`, :func:`shallow_copy`): the grid, Navier–Stokes and
thermomigration solvers all build arrays and kernels from their settings once."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from .errors import refuse_grad, whole_number
from .parameters import Parameter, check_parameter_set, refuse_text_and_bools
from .runtime import warp_device

Solver = TypeVar("Solver")


def shallow_copy(solver: Solver, **changes: Any) -> Solver:
    """A copy of ``solver`` without running its constructor: it shares every attribute's value
    (grids, kernels, Warp buffers), except the attributes set from ``changes``. Nothing is
    re-checked: the caller checks the values it changes."""
    clone = object.__new__(type(solver))
    clone.__dict__.update(solver.__dict__)
    clone.__dict__.update(changes)
    return clone


class BuiltSolver:
    """What may be set on a solver after it is built.

    :meth:`fix_attributes`, the constructor's last call, fixes every public attribute set so
    far and those named in ``FIXED``, except the physical parameters (``parameter_names``) and
    ``SETTABLE``: the solver's arrays and kernels were built from them, so a new value would be
    ignored, and setting one raises AttributeError. The parameters and ``SETTABLE`` may be set:
    :meth:`checked_setting` checks a ``SETTABLE`` value as it is set (the constructor's values
    too), and the rest is read, and checked, when a rollout starts; :meth:`checked_parameter`
    checks a parameter as it is set. A parameter is refused as a tensor that requires grad
    (``GRADIENTS`` says what gives gradients in it; None: nothing does), and as text or a bool.
    """

    SETTABLE: ClassVar[tuple[str, ...]] = ("dt", "check_every")
    FIXED: ClassVar[tuple[str, ...]] = ()
    GRADIENTS: ClassVar[str | None]
    PARAMETERS: ClassVar[tuple[Parameter, ...]] = ()
    parameter_names: ClassVar[tuple[str, ...]] = ()

    def fix_attributes(self) -> None:
        """Make the attributes set so far read-only (see the class docstring)."""
        free = {*self.parameter_names, *self.SETTABLE}
        self._fixed = frozenset(name for name in {*self.FIXED, *self.__dict__}
                                if not name.startswith("_") and name not in free)

    def checked_setting(self, name: str, value: Any) -> Any:
        """``value`` as the ``SETTABLE`` attribute ``name`` keeps it, checked when it is set:
        ``check_every`` a whole number >= 1 (kept as an int); the others as given (read, and
        checked, when a rollout starts).

        Raises:
            ValueError: naming ``name``, its value and what is allowed.
        """
        if name == "check_every":
            return whole_number(value, name, 1)
        return value

    def checked_parameter(self, name: str, value: Any) -> Any:
        """``value`` as the physical parameter ``name`` keeps it, checked when it is set:
        refused as text or a bool; on a built solver with a parameter table (``PARAMETERS``),
        checked as its constructor checks it (:func:`~physml.solvers.parameters.
        check_parameter_set`: one number in its range, one per axis for a per-axis parameter,
        that the solver's dtype holds) and kept as the constructor keeps it.

        Raises:
            ValueError: naming ``name``, the value and what is allowed.
        """
        refuse_text_and_bools(name, value)
        if not self.PARAMETERS or "np_dtype" not in self.__dict__:  # the constructor's own
            return value  # values, checked already
        return check_parameter_set(self.PARAMETERS, name, value, self.grid.ndim, self.np_dtype)

    def refuse_grad_parameters(self, values: dict[str, Any]) -> None:
        """Refuse each parameter value that is a tensor that requires grad, by its name."""
        for name, value in values.items():
            instead = None if self.GRADIENTS is None else self.GRADIENTS.format(name=name)
            refuse_grad(value, name, type(self).__name__, instead)

    def warp_state(self) -> tuple[tuple[str, ...], dict]:
        """The attributes holding Warp devices, arrays, launches or plans (not picklable), and
        the keyword arguments :meth:`rebuild_warp_state` needs to make them again (none here:
        a solver without Warp state pickles whole)."""
        return (), {}

    def rebuild_warp_state(self, **settings: Any) -> None:
        """Make the attributes of :meth:`warp_state` again from the solver's settings."""

    def __getstate__(self) -> dict:
        """The solver's settings: everything but its Warp state (:meth:`warp_state`), with what
        rebuilding that state needs."""
        names, settings = self.warp_state()
        state = {n: v for n, v in self.__dict__.items() if n not in names}
        return {**state, "_warp_settings": settings}

    def __setstate__(self, state: dict) -> None:
        """Restore :meth:`__getstate__`'s settings and rebuild the Warp state on the same
        device (Warp starts here quietly; a device this machine lacks is refused)."""
        state = dict(state)
        settings = state.pop("_warp_settings")
        self.__dict__.update(state)
        warp_device(self.device)
        self.rebuild_warp_state(**settings)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_fixed", ()):
            cls = type(self).__name__
            raise AttributeError(f"{cls}.{name} is fixed when the solver is built (its arrays "
                                 "and kernels follow it, so a new value would be ignored); "
                                 f"build a new {cls} with the {name} you want")
        if name in self.parameter_names:
            self.refuse_grad_parameters({name: value})
            value = self.checked_parameter(name, value)
        elif name in self.SETTABLE:
            value = self.checked_setting(name, value)
        super().__setattr__(name, value)
