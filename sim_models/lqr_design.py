"""Offline LQR design for the balance controller (needs mujoco; the controller itself does not).

Why offline: `sim_models.controller` runs on the robot (numpy only) with gains stored as
constants. This module derives them from the MJCF so they can be re-derived when the model
changes (`python -m sim_models.lqr_design` prints them; a test checks the stored ones match).

Model: the planar wheeled inverted pendulum of the legs-locked robot, coordinates (phi = wheel
rotation in the world, theta = pitch, positive leaning forward), x = r phi:
    [a b; b c] [phi''; theta''] = [2 tau - d phi'; -2 tau + M g l theta]
with a = (m_w + M) r^2 + I_w, b = M r l, c = M l^2 + I_b; M, l, I_b the mass, COM height above
the axle and pitch inertia of everything but the wheels; tau the per-wheel torque. Discretised
at the 200 Hz control period with a zero-order hold, then discrete LQR.
Costs follow the paper's stand-still reward (||s'||^2 + tau^2, so Q = I, R = 1) plus an integral
of the position error (weight 20): without it a COM shift makes the robot run away.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sim_models.model import WHEEL_BODIES, WHEEL_RADIUS_M, load_model
from sim_models.robot import CONTROL_DT_S


def planar_parameters() -> dict[str, float]:
    """Mass, COM height, pitch inertia of the body; mass and inertia of both wheels together."""
    m = load_model("legs_locked")
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("home").id)
    mujoco.mj_forward(m, d)
    wheels = {m.body(w).id for w in WHEEL_BODIES}
    body_ids = [i for i in range(1, m.nbody) if i not in wheels]
    masses = m.body_mass[body_ids]
    com = (masses[:, None] * d.xipos[body_ids]).sum(0) / masses.sum()
    inertia_y = 0.0
    for i in body_ids:
        rot = d.ximat[i].reshape(3, 3)
        inertia_y += (rot @ np.diag(m.body_inertia[i]) @ rot.T)[1, 1]
        dx, dz = d.xipos[i][0] - com[0], d.xipos[i][2] - com[2]
        inertia_y += m.body_mass[i] * (dx * dx + dz * dz)
    axle_z = d.xpos[m.body(WHEEL_BODIES[0]).id][2]
    wheel_dof = [m.jnt_dofadr[m.body(w).jntadr[0]] for w in WHEEL_BODIES]
    return {
        "body_mass": float(masses.sum()),
        "com_height": float(com[2] - axle_z),
        "body_inertia": float(inertia_y),
        "wheel_mass": float(sum(m.body_mass[i] for i in wheels)),
        "wheel_inertia": float(sum(m.body_inertia[i][1] + m.dof_armature[j]
                                   for i, j in zip(sorted(wheels), wheel_dof))),
        "wheel_damping": float(sum(m.dof_damping[j] for j in wheel_dof)),
        "gravity": float(-m.opt.gravity[2]),
    }


def continuous_model(p: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """A, B of x' = A x + B tau for x = [x, v, theta, theta'] and tau = per-wheel torque."""
    r = WHEEL_RADIUS_M
    big_m, l = p["body_mass"], p["com_height"]
    a = (p["wheel_mass"] + big_m) * r * r + p["wheel_inertia"]
    b = big_m * r * l
    c = big_m * l * l + p["body_inertia"]
    minv = np.linalg.inv(np.array([[a, b], [b, c]]))
    # Generalised accelerations [phi'', theta''] = minv @ (F_state + F_tau)
    f_theta = minv @ np.array([0.0, big_m * p["gravity"] * l])  # per unit theta
    # Wheel damping acts on the joint speed phi' - theta'; only its phi' part is kept (small).
    f_phidot = minv @ np.array([-p["wheel_damping"], 0.0])  # per unit phi'
    f_tau = minv @ np.array([2.0, -2.0])  # per unit per-wheel torque
    A = np.zeros((4, 4))
    B = np.zeros((4, 1))
    A[0, 1] = 1.0
    A[2, 3] = 1.0
    # phi' = v / r; x'' = r phi''
    A[1, 1] = f_phidot[0]  # x'' = r phi'' and phi' = v / r
    A[1, 2] = r * f_theta[0]
    A[3, 1] = f_phidot[1] / r
    A[3, 2] = f_theta[1]
    B[1, 0] = r * f_tau[0]
    B[3, 0] = f_tau[1]
    return A, B


def discretise(A: np.ndarray, B: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order hold via the exponential of the augmented matrix (Taylor, scaling and squaring)."""
    n, k = B.shape
    aug = np.zeros((n + k, n + k))
    aug[:n, :n] = A * dt
    aug[:n, n:] = B * dt
    scale = 8
    small = aug / 2**scale
    expm = np.eye(n + k)
    term = np.eye(n + k)
    for i in range(1, 12):
        term = term @ small / i
        expm = expm + term
    for _ in range(scale):
        expm = expm @ expm
    return expm[:n, :n], expm[:n, n:]


def dlqr(Ad: np.ndarray, Bd: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Gain K of u = -K x from the discrete Riccati equation (fixed-point iteration)."""
    P = Q.copy()
    for _ in range(20000):
        K = np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ Ad)
        P_next = Q + Ad.T @ P @ (Ad - Bd @ K)
        if np.max(np.abs(P_next - P)) < 1e-10 * max(1.0, np.max(np.abs(P))):
            P = P_next
            break
        P = P_next
    return np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ Ad)


INTEGRAL_WEIGHT = 20.0  # Q on the integral of the position error: removes the drift a COM shift causes


def design_gains() -> np.ndarray:
    """Per-wheel torque gain K (u = -K e) on e = [integral of x error, x error, v error, pitch,
    pitch_rate]: LQR with integral action, Q = diag(20, 1, 1, 1, 1), R = 1 (N·m per wheel)."""
    A, B = continuous_model(planar_parameters())
    Ad, Bd = discretise(A, B, CONTROL_DT_S)
    n = Ad.shape[0]
    Aa = np.zeros((n + 1, n + 1))
    Aa[0, 0] = 1.0
    Aa[0, 1] = CONTROL_DT_S  # integral += x_error * dt
    Aa[1:, 1:] = Ad
    Ba = np.zeros((n + 1, 1))
    Ba[1:] = Bd
    Q = np.diag([INTEGRAL_WEIGHT, 1.0, 1.0, 1.0, 1.0])
    return dlqr(Aa, Ba, Q, np.array([[1.0]])).ravel()


if __name__ == "__main__":
    np.set_printoptions(precision=6, suppress=True)
    print(planar_parameters())
    print("LQR_GAIN =", repr(design_gains()))
