import os

import numpy as np
import pytest

from hacm_tf.data import ntu
from hacm_tf.data.synthetic import format_skeleton
from hacm_tf.errors import DataError
from tests.conftest import shared_path

RNG = np.random.RandomState(0)


def person(frames, x0=0.0, width=0.4, height=1.6, wiggle=0.05, seed=0):
    """A body [frames, 25, 3]: joints spread over width (x) and height (y), moving by `wiggle`."""
    r = np.random.RandomState(seed)
    base = np.stack([np.linspace(-width / 2, width / 2, 25), np.linspace(-height / 2, height / 2, 25),
                     np.full(25, 3.0)], -1)
    base = base[r.permutation(25)]
    t = np.arange(frames)[:, None, None]
    return (base[None] + [x0, 0, 0] + wiggle * np.sin(0.3 * t + r.uniform(0, 6, size=(1, 25, 3)))).astype(np.float32)


def write(tmp_path, name, frames):
    p = os.path.join(str(tmp_path), name + ".skeleton")
    with open(p, "w") as f:
        f.write(format_skeleton(frames, np.random.RandomState(1)))
    return p


def test_real_samples_match_reference_preparation_bit_exactly():
    ref = np.load(shared_path("reference_outputs", "feeder.npz"))
    for key, name in (("s0", "S001C001P001R001A001"), ("s1", "S001C001P001R001A050")):
        s = ntu.read_ntu_sample(shared_path("ntu", "samples", name + ".skeleton"))
        padded = np.zeros((300, 2, 25, 3), np.float32)
        padded[: len(s.skeleton)] = s.skeleton
        np.testing.assert_array_equal(padded.transpose(3, 0, 2, 1), ref[key + "__input_ctvm"])
        assert len(s.skeleton) == int(ref[key + "__valid_frame_num"])


@pytest.mark.parametrize("name,label,frames,two", [
    ("S001C001P001R001A001", 0, 103, False), ("S001C001P001R001A002", 1, 158, False),
    ("S001C001P001R001A003", 2, 104, False), ("S001C001P001R001A050", 49, 74, True),
    ("S017C003P020R002A054", 53, 42, True)])
def test_real_samples_metadata(name, label, frames, two):
    s = ntu.read_ntu_sample(shared_path("ntu", "samples", name + ".skeleton"))
    f = ntu.parse_name(name)
    assert (s.label, s.subject, s.camera, s.setup, s.replication) == (label, f.subject, f.camera, f.setup,
                                                                      f.replication)
    assert s.skeleton.shape == (frames, 2, 25, 3)
    assert bool(np.any(s.skeleton[:, 1])) == two
    # centred on actor 1's spine-middle joint in the first frame
    np.testing.assert_allclose(s.skeleton[0, 0, 1], 0, atol=1e-6)


def test_parse_keeps_all_fields_and_drops_empty_frames(tmp_path):
    body = person(20)
    frames = [[("111", body[t])] for t in range(20)]
    frames[3] = []
    frames[7] = []
    raw = ntu.parse_skeleton_file(write(tmp_path, "S001C001P001R001A001", frames))
    assert raw.num_frames == 18 and raw.dropped_frames == [3, 7]
    b = raw.bodies["111"]
    assert b.joints.shape == (18, 25, 3) and b.colors.shape == (18, 25, 2) and b.info.shape == (18, 9)
    assert b.interval == list(range(18))
    np.testing.assert_allclose(b.joints, np.delete(body, [3, 7], axis=0), atol=1e-6)


def test_ntu120_copies_a_lone_actor_ntu60_pads_zeros(tmp_path):
    p = write(tmp_path, "S001C001P001R001A001", [[("1", b)] for b in person(15)])
    s60 = ntu.read_ntu_sample(p, copy_single_actor=False)
    s120 = ntu.read_ntu_sample(p, copy_single_actor=True)
    assert not np.any(s60.skeleton[:, 1])
    np.testing.assert_array_equal(s120.skeleton[:, 1], s120.skeleton[:, 0])


def test_short_body_removed_by_length(tmp_path):
    main, noise = person(30, seed=1), person(30, x0=1.0, wiggle=0.5, seed=2)
    frames = [[("main", main[t])] + ([("noise", noise[t])] if 5 <= t < 16 else []) for t in range(30)]  # 11 frames
    raw = ntu.parse_skeleton_file(write(tmp_path, "S001C001P001R001A001", frames))
    kept = ntu.denoise_bodies(raw.bodies)
    assert [b.body_id for b in kept] == ["main"]
    joints = ntu.assemble_actors(raw)
    assert joints.shape == (30, 75)


def test_body_of_12_frames_survives_length_filter(tmp_path):
    main, other = person(30, seed=1), person(30, x0=1.0, seed=2)
    frames = [[("main", main[t])] + ([("other", other[t])] if 5 <= t < 17 else []) for t in range(30)]  # 12 frames
    raw = ntu.parse_skeleton_file(write(tmp_path, "S001C001P001R001A001", frames))
    assert {b.body_id for b in ntu.denoise_bodies(raw.bodies)} == {"main", "other"}


def spread_body(frames, wide_frames, seed):
    b = person(frames, seed=seed)
    for t in range(wide_frames):
        b[t, :, 0] *= 20.0   # x-spread 8 m > 0.8 * 1.6 m
    return b


@pytest.mark.parametrize("wide,removed", [(20, False), (21, True)])  # ratio 20/30 = 0.667, 21/30 = 0.7
def test_spread_threshold(tmp_path, wide, removed):
    main, furniture = person(30, seed=1), spread_body(30, wide, seed=2)
    frames = [[("main", main[t]), ("furniture", furniture[t])] for t in range(30)]
    raw = ntu.parse_skeleton_file(write(tmp_path, "S001C001P001R001A001", frames))
    ids = [b.body_id for b in ntu.denoise_bodies(raw.bodies)]
    assert ("furniture" not in ids) == removed
    if not removed:  # motion recomputed on its valid frames only, and the minimum kept
        f = raw.bodies["furniture"]
        valid = f.joints[wide:].reshape(-1, 3)
        full = f.joints.reshape(-1, 3)
        assert f.motion == pytest.approx(min(np.var(full, axis=0).sum(), np.var(valid, axis=0).sum()), rel=1e-5)


def test_two_actor_assembly_ranks_by_motion_and_fills_gaps(tmp_path):
    calm, busy = person(40, wiggle=0.01, seed=1), person(40, x0=1, wiggle=0.3, seed=2)
    late = person(40, x0=-1, wiggle=0.2, seed=3)
    frames = []
    for t in range(40):
        f = [("busy", busy[t])] if t < 20 else []          # actor 1 (largest motion), frames 0-19
        f.append(("calm", calm[t]))                         # overlaps actor 1 -> actor 2
        if t >= 20:
            f.append(("late", late[t]))                     # no overlap with actor 1 -> joins actor 1
        frames.append(f)
    raw = ntu.parse_skeleton_file(write(tmp_path, "S001C001P001R001A050", frames))
    ranked = [b.body_id for b in ntu.denoise_bodies(raw.bodies)]
    assert ranked == ["busy", "late", "calm"]
    j = ntu.assemble_actors(raw)
    assert j.shape == (40, 150)
    np.testing.assert_allclose(j[:20, :75], busy[:20].reshape(20, 75), atol=1e-5)
    np.testing.assert_allclose(j[20:, :75], late[20:].reshape(20, 75), atol=1e-5)
    np.testing.assert_allclose(j[:, 75:], calm.reshape(40, 75), atol=1e-5)


def test_missing_frames_removed_for_multi_body_samples_and_centring(tmp_path):
    a, b = person(30, seed=1, wiggle=0.2), person(30, x0=1, seed=2)
    frames = [[("a", a[t])] + ([("b", b[t])] if t < 25 else []) for t in range(30)]
    raw = ntu.parse_skeleton_file(write(tmp_path, "S001C001P001R001A001", frames))
    j = ntu.centre_sequence(ntu.assemble_actors(raw))
    # numpy restatement: origin = actor 1 joint 2 (index 1) of frame 0, subtracted from non-missing actors
    origin = a[0, 1]
    np.testing.assert_allclose(j[:, :75].reshape(30, 25, 3), a - origin, atol=1e-6)
    np.testing.assert_allclose(j[:25, 75:].reshape(25, 25, 3), b[:25] - origin, atol=1e-6)
    assert not np.any(j[25:, 75:])   # actor 2 missing there: stays zero after centring


MALFORMED = [
    ("", "unexpected end of file"),
    ("abc\n", "expected an integer"),
    ("0\n", "zero frames"),
    ("-3\n", "outside"),
    ("2\n1\n", "unexpected end of file"),
]


@pytest.mark.parametrize("text,message", MALFORMED)
def test_malformed_headers(tmp_path, text, message):
    p = tmp_path / "S001C001P001R001A001.skeleton"
    p.write_text(text)
    with pytest.raises(DataError, match=message) as e:
        ntu.parse_skeleton_file(str(p))
    assert "S001C001P001R001A001.skeleton" in str(e.value)


def _edit_line(tmp_path, edit):
    p = write(tmp_path, "S001C001P001R001A001", [[("1", b)] for b in person(3)])
    lines = open(p).read().split("\n")
    lines = edit(lines)
    with open(p, "w") as f:
        f.write("\n".join(lines))
    return p


@pytest.mark.parametrize("edit,message,line", [
    (lambda L: L[:10], "unexpected end of file inside a joint line", 11),            # truncated mid-frame
    (lambda L: L[:5] + [L[5][:20]] + L[6:], "expected 12 values", 6),               # truncated joint line
    (lambda L: L[:3] + ["24"] + L[4:], "expected 25 joints, found 24", 4),         # wrong joint count
    (lambda L: L[:7] + [L[7] + " 9"] + L[8:], "expected 12 values", 8),            # extra token
    (lambda L: L[:8] + [L[8].replace(L[8].split()[1], "x1.5", 1)] + L[9:], "non-numeric value 'x1.5'", 9),
    (lambda L: L[:9] + [L[9].replace(L[9].split()[0], "nan", 1)] + L[10:], "non-finite", 10),
    (lambda L: L + ["junk"], "unexpected content after the last", None),
    (lambda L: ["3", "0", "0", "0"], "no body in any of the 3 frames", None),
])
def test_malformed_content_names_file_and_line(tmp_path, edit, message, line):
    p = _edit_line(tmp_path, edit)
    with pytest.raises(DataError, match=message) as e:
        ntu.parse_skeleton_file(p)
    if line is not None:
        assert e.value.line == line and f"line {line}:" in str(e.value)


def test_binary_and_non_ascii_files(tmp_path):
    p = tmp_path / "S001C001P001R001A001.skeleton"
    p.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(DataError, match="binary content"):
        ntu.parse_skeleton_file(str(p))
    p.write_bytes("1\n1\n\xe9t\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="non-ASCII"):
        ntu.parse_skeleton_file(str(p))


def test_bad_file_name(tmp_path):
    p = write(tmp_path, "S001C001P001A001", [[("1", b)] for b in person(3)])
    with pytest.raises(DataError, match="does not follow the NTU pattern"):
        ntu.read_ntu_sample(p)


@pytest.mark.parametrize("dataset,protocol,train,test", [
    ("ntu60", "xsub", 40091, 16487), ("ntu60", "xview", 37646, 18932),
    ("ntu120", "xsub", 63026, 50919), ("ntu120", "xset", 54468, 59477)])
def test_split_sizes_from_statistics_lists(dataset, protocol, train, test):
    names = ntu.read_name_list(shared_path("ntu", "statistics", dataset, "skes_available_name.txt"))
    assert len(names) == {"ntu60": 56578, "ntu120": 113945}[dataset]
    s = ntu.split_names(names, dataset, protocol)
    assert (len(s["train"]), len(s["test"])) == (train, test)
    # statistics files agree with the names' fields
    stat = "performer" if protocol == "xsub" else {"xview": "camera", "xset": "setup"}[protocol]
    values = ntu.read_name_list(shared_path("ntu", "statistics", dataset, stat + ".txt"))
    field = {"performer": "subject"}.get(stat, stat)
    assert [getattr(ntu.parse_name(n), field) for n in names] == [int(v) for v in values]


def test_missing_skeleton_lists_have_reference_sizes():
    m60 = ntu.read_name_list(shared_path("ntu", "statistics", "ntu60", "samples_with_missing_skeletons.txt"))
    m120 = ntu.read_name_list(shared_path("ntu", "statistics", "ntu120",
                                          "NTU_RGBD120_samples_with_missing_skeletons.txt"))
    assert (len(m60), len(m120)) == (302, 535) and set(m60) <= set(m120)


def test_split_order_is_group_by_group():
    names = ["S001C001P003R001A001", "S001C001P001R001A002", "S001C001P002R001A001", "S001C001P001R001A001"]
    s = ntu.split_names(names, "ntu60", "xsub")
    assert s["train"] == ["S001C001P001R001A001", "S001C001P001R001A002", "S001C001P002R001A001"]
    assert s["test"] == ["S001C001P003R001A001"]
    with pytest.raises(ValueError, match="unknown protocol"):
        ntu.split_names(names, "ntu60", "xset")
