import pytest

from hacm_tf import skeleton


def test_ntu25_hub_and_kept_joints_match_reference():
    # docs/official_code.md §3 (joints), 0-based, in the reference's order.
    assert skeleton.NTU25.hub_joints == (0, 1, 4, 8, 12, 16, 20)
    assert skeleton.NTU25.kept_joints == (2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22, 23, 24)


def test_kinect_v1_hubs_follow_the_same_rule():
    lay = skeleton.KINECT_V1_20
    # hip centre, spine, shoulder centre, both shoulders, both hips
    assert lay.hub_joints == (0, 1, 2, 4, 8, 12, 16)
    assert len(lay.kept_joints) == 13
    assert set(lay.hub_joints) | set(lay.kept_joints) == set(range(20))


@pytest.mark.parametrize("layout", list(skeleton.LAYOUTS.values()))
def test_layout_is_a_tree(layout):
    assert len(layout.bones) == layout.num_joints - 1
    for j in range(layout.num_joints):
        assert layout.path_to_root(j)[-1] == layout.root


def test_bad_layouts_are_rejected():
    with pytest.raises(ValueError, match="exactly one root"):
        skeleton.JointLayout("x", ("a", "b"), (-1, -1), (), 0)
    with pytest.raises(ValueError, match="does not reach the root"):
        skeleton.JointLayout("x", ("a", "b", "c"), (-1, 2, 1), (), 0)
    with pytest.raises(ValueError, match="unknown joint layout"):
        skeleton.get_layout("ntu26")
