r"""Homogeneous free energies $f(c, T)$ [J/mol] of a binary alloy, and their mobilities.

$c$ is the solute mole fraction. Each model gives the chemical potential $\mu_0 = \partial f/
\partial c$ at fixed $T$, the atomic mobility $M(c, T)$ [mol m^2/(J s)] in terms of an Arrhenius
diffusivity $D(T) = D_0 \exp(-Q_d/RT)$ [m^2/s], and the same quantities scaled by the units of
:class:`~physml.solvers.thermomigration.Units` (what the Warp kernels read).

* :class:`DiluteSolution`: ideal dilute interstitial solution (Fe–C, Fe–N single phase),
  $\mu_0 = RT\ln c$, $M = D c/(RT)$, so the isothermal flux is Fick's $-D\nabla c$.
* :class:`DoubleWell`: the polynomial double well with temperature-dependent well positions,
  $f = A\,(c - c_\alpha(T))^2 (c - c_\beta(T))^2$ with $A = 16W/(c_{\beta 0} - c_{\alpha 0})^4$,
  $c_p(T) = c_{p0} + c_p'\,(T - T_0)$: a parameterised two-phase alloy whose phase boundaries
  (solubilities) move linearly with temperature; $c_\alpha' = c_\beta' = 0$, $c_\alpha = 0$,
  $c_\beta = 1$ is the textbook $W\,16c^2(1-c)^2$. $M = D/f''_{eq}$ with
  $f''_{eq} = 2A(c_{\beta 0}-c_{\alpha 0})^2$ the curvature at the wells, so $D$ is the
  diffusivity of both phases.
* :class:`RegularSolution`: $f = RT[c\ln c + (1-c)\ln(1-c)] + \Omega c(1-c)$, a miscibility gap
  below $T_c = \Omega/(2R)$ whose phase boundaries widen as $T$ falls; $M = D c(1-c)/(RT)$.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

GAS_CONSTANT = 8.314462618
"""Molar gas constant R [J/(mol K)]."""


class FreeEnergyKind(enum.IntEnum):
    """Which homogeneous free energy a kernel evaluates."""

    DILUTE = 0
    DOUBLE_WELL = 1
    REGULAR_SOLUTION = 2


def _positive(name: str, value: float) -> float:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value} must be a positive number")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class _ArrheniusModel:
    """Shared part of the models: the diffusivity $D(T) = D_0\\exp(-Q_d/RT)$.

    Args:
        diffusivity: $D_0$ [m^2/s], > 0.
        activation_energy: $Q_d$ [J/mol], >= 0 (0: $D$ independent of $T$).
    """

    diffusivity: float
    activation_energy: float = 0.0

    compositions = (-np.inf, np.inf)
    """The open interval of compositions the model is defined on (a step must stay in it)."""
    composition_meaning = ""
    """What c is, for the message of :meth:`check_composition`."""

    def __post_init__(self) -> None:
        _positive("diffusivity", self.diffusivity)
        if not (np.isfinite(self.activation_energy) and self.activation_energy >= 0):
            raise ValueError(f"activation_energy={self.activation_energy} must be >= 0 J/mol")

    def diffusion_coefficient(self, T: np.ndarray | float) -> np.ndarray:
        """$D(T)$ [m^2/s]."""
        return self.diffusivity * np.exp(-self.activation_energy / (GAS_CONSTANT * np.asarray(T)))

    def diffusivity_bound(self, T_min: float, T_max: float) -> float:
        """Upper bound of $M\\,\\partial^2 f/\\partial c^2$ [m^2/s] over the temperature range
        ($D(T_{max})$ unless a model says otherwise)."""
        return float(self.diffusion_coefficient(T_max))

    def free_energy(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        """The homogeneous free energy $f(c, T)$ [J/mol], elementwise (``c`` and ``T``
        broadcast)."""
        raise NotImplementedError

    def chemical_potential(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        """$\\mu_0 = \\partial f/\\partial c$ [J/mol], elementwise."""
        raise NotImplementedError

    def mobility(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        """$M(c, T)$ [m^2 mol/(J s)], elementwise: the flux is $-M\\nabla\\mu$."""
        raise NotImplementedError

    def check_composition(self, c: np.ndarray) -> None:
        """Raise ValueError if ``c`` lies outside :attr:`compositions`, the open interval the
        model is defined on."""
        lower, upper = self.compositions
        if np.min(c) <= lower or np.max(c) >= upper:
            raise ValueError(f"c0 spans [{np.min(c):.3g}, {np.max(c):.3g}]; the "
                             f"{self.kind.name.lower().replace('_', ' ')} model's c "
                             f"{self.composition_meaning}needs {lower:g} < c < {upper:g}")

    def scaled_parameters(self, T_ref: float) -> np.ndarray:
        """Dimensionless parameters for the kernels: $[Q_d/(RT_{ref}), \\dots]$ (see subclasses);
        the scaled diffusivity is $\\tilde D(\\tilde T) = \\exp(\\tilde Q_d(1 - 1/\\tilde T))$."""
        return np.array([self.activation_energy / (GAS_CONSTANT * T_ref)])


@dataclass(frozen=True, kw_only=True)
class DiluteSolution(_ArrheniusModel):
    r"""Ideal dilute solution: $f = RT(c\ln c - c)$, $\mu_0 = RT\ln c$, $M = D c/(RT)$.

    With the heat of transport the flux is $J = -D(\nabla c + c\,Q^*\nabla T/(RT^2))$ and the
    zero-flux steady state is $c \propto \exp(Q^*/(RT))$. $c$ is the solute's mole fraction:
    $0 < c < 1$.

    Args:
        diffusivity: $D_0$ [m^2/s] of $D(T) = D_0\exp(-Q_d/RT)$, > 0 (required).
        activation_energy: $Q_d$ [J/mol], >= 0 (default 0: $D$ independent of $T$).
    """

    kind = FreeEnergyKind.DILUTE
    compositions = (0.0, 1.0)
    composition_meaning = "is the solute's mole fraction: it "

    def free_energy(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        return GAS_CONSTANT * T * (c * np.log(c) - c)

    def chemical_potential(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        return GAS_CONSTANT * T * np.log(c)

    def mobility(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        return self.diffusion_coefficient(T) * c / (GAS_CONSTANT * T)



@dataclass(frozen=True, kw_only=True)
class DoubleWell(_ArrheniusModel):
    r"""Double well $f = A(c - c_\alpha(T))^2(c - c_\beta(T))^2$, $A = 16W/\Delta c_0^4$.

    $\Delta c_0 = c_{\beta0} - c_{\alpha0}$.

    Args:
        barrier: $W$ [J/mol], the height of the barrier between the wells, > 0.
        c_alpha, c_beta: well positions $c_{\alpha 0} < c_{\beta 0}$ at $T_0$ (matrix, precipitate).
        slope_alpha, slope_beta: $dc_\alpha/dT$, $dc_\beta/dT$ [1/K] (solubility slopes).
        T0: the temperature [K] of ``c_alpha``, ``c_beta``, > 0.
        diffusivity: $D_0$ [m^2/s] of $D(T) = D_0\exp(-Q_d/RT)$, > 0 (required).
        activation_energy: $Q_d$ [J/mol], >= 0 (default 0: $D$ independent of $T$).

    The two wells have the same depth, so the common tangent is $\mu_0 = 0$ and the equilibrium
    compositions are exactly $c_\alpha(T)$, $c_\beta(T)$. A flat interface has the profile
    $c = c_\alpha + (c_\beta - c_\alpha)(1 + \tanh(x/\delta))/2$ with
    $\delta = \sqrt{2\kappa/A}/(c_\beta - c_\alpha)$ (:meth:`interface_width`).
    """

    barrier: float
    c_alpha: float = 0.0
    c_beta: float = 1.0
    slope_alpha: float = 0.0
    slope_beta: float = 0.0
    T0: float = 1000.0

    kind = FreeEnergyKind.DOUBLE_WELL

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("barrier", self.barrier)
        _positive("T0", self.T0)
        if not self.c_alpha < self.c_beta:
            raise ValueError(f"c_alpha={self.c_alpha} must be below c_beta={self.c_beta}")

    @property
    def curvature_scale(self) -> float:
        """$A$ [J/mol]."""
        return 16 * self.barrier / (self.c_beta - self.c_alpha) ** 4

    def equilibrium(self, T: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """$(c_\\alpha(T), c_\\beta(T))$."""
        dT = np.asarray(T, dtype=np.float64) - self.T0
        return self.c_alpha + self.slope_alpha * dT, self.c_beta + self.slope_beta * dT

    def free_energy(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        a, b = self.equilibrium(T)
        return self.curvature_scale * (c - a) ** 2 * (c - b) ** 2

    def chemical_potential(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        a, b = self.equilibrium(T)
        return 2 * self.curvature_scale * (c - a) * (c - b) * (2 * c - a - b)

    def well_curvature(self, T: float | None = None) -> float:
        """$f''$ at the wells [J/mol], $2A(c_\\beta(T) - c_\\alpha(T))^2$ (default $T = T_0$)."""
        a, b = self.equilibrium(self.T0 if T is None else T)
        return float(2 * self.curvature_scale * (b - a) ** 2)

    def mobility(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.diffusion_coefficient(T) / self.well_curvature(), np.shape(c))

    def diffusivity_bound(self, T_min: float, T_max: float) -> float:
        """Between the wells $f''$ is largest at them, so $M f'' \\le D(T)\\,g(T)^2/\\Delta c_0^2$
        with the gap $g(T) = c_\\beta(T) - c_\\alpha(T)$: wells wider apart than at $T_0$ raise it
        above $D$. $D$ grows with $T$ and $g$ is linear in $T$, so $g^2$ is largest at an end of
        the range: bounded by $D(T_{max})\\max(g(T_{min})^2, g(T_{max})^2)/\\Delta c_0^2$."""
        gap0 = self.c_beta - self.c_alpha
        widest = max(abs(b - a) for a, b in map(self.equilibrium, (T_min, T_max)))
        return float(self.diffusion_coefficient(T_max) * (widest / gap0) ** 2)

    def interface_width(self, kappa: float) -> float:
        """$\\delta$ [m] of the tanh profile for gradient coefficient $\\kappa$ [J m^2/mol]."""
        return float(np.sqrt(2 * kappa / self.curvature_scale) / (self.c_beta - self.c_alpha))

    def gradient_coefficient(self, width: float) -> float:
        """$\\kappa$ [J m^2/mol] giving the interface width $\\delta$ [m]."""
        return float(self.curvature_scale * ((self.c_beta - self.c_alpha) * width) ** 2 / 2)

    def interface_energy(self, kappa: float) -> float:
        """$\\sigma V_m = \\int\\kappa c_x^2 dx = \\sqrt{2\\kappa A}\\Delta c_0^3/6$ [J m/mol]."""
        gap = self.c_beta - self.c_alpha
        return float(np.sqrt(2 * kappa * self.curvature_scale) * gap**3 / 6)

    def scaled_parameters(self, T_ref: float) -> np.ndarray:
        """$[\\tilde Q_d, \\tilde A, c_\\alpha(T_{ref}), c_\\beta(T_{ref}), c_\\alpha' T_{ref},
        c_\\beta' T_{ref}, \\tilde f''_{eq}]$ with energies divided by $RT_{ref}$."""
        energy = GAS_CONSTANT * T_ref
        a, b = self.equilibrium(T_ref)
        return np.concatenate([
            super().scaled_parameters(T_ref),
            [self.curvature_scale / energy, float(a), float(b), self.slope_alpha * T_ref,
             self.slope_beta * T_ref, self.well_curvature() / energy],
        ])


@dataclass(frozen=True, kw_only=True)
class RegularSolution(_ArrheniusModel):
    r"""Regular solution $f = RT[c\ln c + (1-c)\ln(1-c)] + \Omega c(1-c)$, $M = Dc(1-c)/(RT)$.

    Args:
        interaction: $\Omega$ [J/mol], > 0; a miscibility gap exists below $T_c = \Omega/(2R)$.
        diffusivity: $D_0$ [m^2/s] of $D(T) = D_0\exp(-Q_d/RT)$, > 0 (required).
        activation_energy: $Q_d$ [J/mol], >= 0 (default 0: $D$ independent of $T$).

    Needs $0 < c < 1$. The phase boundaries are symmetric, $c_\alpha = 1 - c_\beta$, the roots of
    $RT\ln(c/(1-c)) + \Omega(1-2c) = 0$ (:meth:`equilibrium`).
    """

    interaction: float

    kind = FreeEnergyKind.REGULAR_SOLUTION
    compositions = (0.0, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("interaction", self.interaction)

    @property
    def critical_temperature(self) -> float:
        return self.interaction / (2 * GAS_CONSTANT)

    def equilibrium(self, T: float) -> tuple[float, float]:
        """Phase boundaries $(c_\\alpha, c_\\beta)$ at $T < T_c$."""
        if not T < self.critical_temperature:
            raise ValueError(f"T={T} K is above the critical temperature "
                             f"{self.critical_temperature:.1f} K: no miscibility gap")
        def mu(c):
            return self.chemical_potential(c, T)
        spinodal = 0.5 * (1 - np.sqrt(1 - T / self.critical_temperature))
        c_alpha = brentq(mu, 1e-300, spinodal) if mu(1e-300) < 0 else 1e-300
        return float(c_alpha), float(1 - c_alpha)

    def free_energy(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        entropy = c * np.log(c) + (1 - c) * np.log(1 - c)
        return GAS_CONSTANT * T * entropy + self.interaction * c * (1 - c)

    def chemical_potential(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        return GAS_CONSTANT * T * np.log(c / (1 - c)) + self.interaction * (1 - 2 * c)

    def mobility(self, c: np.ndarray, T: np.ndarray) -> np.ndarray:
        return self.diffusion_coefficient(T) * c * (1 - c) / (GAS_CONSTANT * T)

    def diffusivity_bound(self, T_min: float, T_max: float) -> float:
        """$M f'' = D(1 - 2\\Omega c(1-c)/RT)$: bounded by $D\\max(1, \\Omega/(2RT) - 1)$."""
        spinodal = self.interaction / (2 * GAS_CONSTANT * T_min) - 1
        return float(self.diffusion_coefficient(T_max) * max(1.0, spinodal))

    def scaled_parameters(self, T_ref: float) -> np.ndarray:
        """$[\\tilde Q_d, \\Omega/(RT_{ref})]$."""
        return np.concatenate([super().scaled_parameters(T_ref),
                               [self.interaction / (GAS_CONSTANT * T_ref)]])



FreeEnergy = DiluteSolution | DoubleWell | RegularSolution
