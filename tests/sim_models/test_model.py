"""The MJCF folder and models: layout, physics conventions, warning-free stepping (menagerie-style)."""

from __future__ import annotations

import hashlib

import mujoco
import numpy as np
import pytest

from protocol.robot_types import ACTUATOR_NAMES
from sim_models.model import MODEL_DIR, ROBOT_XML, SCENE_XML, VARIANTS, ModelVariantError, load_model

FILES = ("wheel_legged.xml", "scene.xml", "README.md", "CHANGELOG.md")


def test_folder_has_menagerie_layout():
    for name in FILES:
        assert (MODEL_DIR / name).is_file(), name
    readme = (MODEL_DIR / "README.md").read_text()
    assert "Minimum MuJoCo version" in readme and "| parameter | value | source |" in readme


def test_robot_file_has_no_floor_and_scene_includes_it():
    robot = mujoco.MjModel.from_xml_path(str(ROBOT_XML))
    scene = mujoco.MjModel.from_xml_path(str(SCENE_XML))
    assert robot.ngeom == scene.ngeom - 1
    assert scene.geom("floor").type == mujoco.mjtGeom.mjGEOM_PLANE


def test_every_body_has_explicit_inertial_and_total_mass_is_h2o_robot():
    spec = mujoco.MjSpec.from_file(str(ROBOT_XML))
    bodies = [b for b in spec.bodies if b.name != "world"]
    assert bodies and all(b.explicitinertial for b in bodies)
    assert load_model().body_mass.sum() == pytest.approx(12.1, abs=1e-9)


def test_actuators_sensors_keyframe_follow_the_contract():
    m = load_model("full")
    assert [m.actuator(i).name for i in range(m.nu)] == list(ACTUATOR_NAMES)
    for i, name in enumerate(ACTUATOR_NAMES):
        assert m.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT
        assert m.joint(m.actuator_trnid[i, 0]).name == name
        np.testing.assert_array_equal(m.actuator_ctrlrange[i], m.actuator_forcerange[i])
        for suffix in ("_pos", "_vel"):
            assert int(m.sensor(name + suffix).objid[0]) == m.joint(name).id
    for name in ("imu_quat", "imu_gyro", "imu_acc"):
        assert m.site(int(m.sensor(name).objid[0])).name == "imu"
    key = m.key("home")
    assert key.qpos.shape == (m.nq,) and key.ctrl.shape == (m.nu,)
    assert m.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST


def test_only_tyres_and_base_can_touch_the_floor():
    m = load_model("full")
    floor = m.geom("floor").id
    touching = set()
    for g in range(m.ngeom):
        if g == floor:
            continue
        pairs = (m.geom_contype[g] & m.geom_conaffinity[floor]) or (
            m.geom_contype[floor] & m.geom_conaffinity[g])
        if pairs:
            touching.add(m.body(m.geom_bodyid[g]).name)
            assert m.geom_group[g] == 3
        else:
            assert m.geom_group[g] == 2  # visual
    assert touching == {"base", "left_wheel", "right_wheel"}


def test_legs_locked_variant_is_a_scripted_edit():
    before = hashlib.sha256(ROBOT_XML.read_bytes()).hexdigest()
    m = load_model("legs_locked")
    assert [m.actuator(i).name for i in range(m.nu)] == ["left_wheel", "right_wheel"]
    assert m.nq == 7 + 2 and m.key("home").qpos.shape == (m.nq,)
    assert m.body_mass.sum() == pytest.approx(12.1)
    assert hashlib.sha256(ROBOT_XML.read_bytes()).hexdigest() == before
    with pytest.raises(ModelVariantError, match="unknown model variant"):
        load_model("wheels_only")


@pytest.mark.parametrize("variant", VARIANTS)
def test_drive_all_actuators_across_ctrlrange_without_warnings(variant):
    m = load_model(variant)
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("home").id)
    # Deterministic quasi-random controls (Halton bases 2, 3, 5, ...) across each ctrlrange.
    primes = [2, 3, 5, 7, 11, 13][: m.nu]
    lo, hi = m.actuator_ctrlrange[:, 0], m.actuator_ctrlrange[:, 1]
    for step in range(int(0.1 / m.opt.timestep)):
        u = np.array([_halton(step + 1, p) for p in primes])
        d.ctrl[:] = lo + u * (hi - lo)
        mujoco.mj_step(m, d)
    assert not any(w.number for w in d.warning), [w.number for w in d.warning]
    assert np.all(np.isfinite(d.qpos))


def _halton(i: int, base: int) -> float:
    f, r = 1.0, 0.0
    while i > 0:
        f /= base
        r += f * (i % base)
        i //= base
    return r
