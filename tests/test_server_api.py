"""The REST API (`gancanvas serve`) with FastAPI's test client on tiny models in a temporary models
dir: PNG in and out, jobs and progress, styles, the catalog's name rules, limits (413), the bounded
queue (503) and bad input answered with one-line 4xx messages while the server keeps serving."""

import io
import json
import pickle
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402

from gancanvas import registry  # noqa: E402
from gancanvas.data.synthetic import PALETTE  # noqa: E402
from gancanvas.server import styling  # noqa: E402
from gancanvas.server.app import create_app  # noqa: E402
from gancanvas.server.settings import Settings  # noqa: E402
from gancanvas.weights import save_model  # noqa: E402

P2P = {"label_nc": 10, "ngf": 4, "n_downsample_global": 2, "n_blocks_global": 1, "instance_feat": True,
       "nef": 4, "n_downsample_E": 2, "n_clusters": 4}


def _save(path, arch, cfg, model=None, extra=None):
    torch.manual_seed(0)
    model = model if model is not None else registry.create(arch, **cfg)
    save_model(path, model, arch=arch, config=registry.model_config(arch, cfg).__dict__, extra=extra)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    _save(d / "deepfill-tiny.safetensors", "deepfill_v2", {"cnum": 4})
    _save(d / "srn-tiny.safetensors", "srn", {"g_cnum": 4})
    torch.manual_seed(0)
    p2p = registry.create("pix2pixhd", **P2P)
    rng = np.random.default_rng(0)
    # Centres far apart, so that another pick shows in the uint8 output of an untrained model.
    p2p.set_clusters({c: rng.uniform(-1, 1, (3, 3)) for c in range(10)})
    _save(d / "p2p-tiny.safetensors", "pix2pixhd", P2P, p2p, extra={"palette": "scenes"})
    (d / "broken.safetensors").write_bytes(b"not a safetensors file")
    (d / "notes.txt").write_text("not a model")
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.safetensors"
    _save(outside, "deepfill_v2", {"cnum": 4})
    (d / "linked.safetensors").symlink_to(outside)
    return d


@pytest.fixture(scope="module")
def client(models_dir):
    with TestClient(create_app(Settings(models_dir=models_dir, max_pixels=200_000))) as c:
        yield c


def png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def image(h=40, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def hole(h=40, w=48):
    m = np.zeros((h, w), np.uint8)
    m[10:24, 12:30] = 255
    return m


def one_line_error(r, status):
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail and "Traceback" not in detail
    return detail


def still_serving(client):
    r = client.post("/api/inpaint", files={"image": ("a.png", png(image())), "mask": ("m.png", png(hole()))})
    assert r.status_code == 200


def wait(client, job, timeout=60):
    end = time.monotonic() + timeout
    while job["state"] not in ("done", "error"):
        assert time.monotonic() < end, "job did not finish"
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


# ----------------------------------------------------------------------------- models and pages
def test_models_lists_files_of_the_dir_and_builtins(client):
    body = client.get("/api/models").json()
    rows = {m["name"]: m for m in body["models"]}
    assert {"deepfill-tiny", "srn-tiny", "p2p-tiny", "broken"} <= set(rows)
    assert "linked" not in rows and "secret" not in rows  # a symlink out of the models dir is not offered
    assert not rows["broken"]["available"] and "safetensors" in rows["broken"]["reason"]
    assert rows["deepfill-tiny"]["task"] == "inpaint" and rows["deepfill-tiny"]["guided"] is False
    for name in registry.PRETRAINED:
        assert rows[name]["source"] == "builtin"
    p2p = rows["p2p-tiny"]
    assert p2p["palette"] == "scenes" and p2p["colours"] == PALETTE.tolist() and p2p["label_nc"] == 10
    assert set(p2p["style"]["kinds"]) == {"random", "cluster", "zeros", "image"}
    assert p2p["style"]["per_region"] and p2p["style"]["mix"]
    assert all(body["tasks"][t]["available"] for t in ("inpaint", "outpaint", "synthesize"))
    assert body["limits"]["max_pixels"] == 200_000


def test_a_task_without_models_says_why(tmp_path, monkeypatch):
    from gancanvas import registry

    # Every task has a built-in model now: hide the outpainting one.
    monkeypatch.setattr(registry, "PRETRAINED", {k: v for k, v in registry.PRETRAINED.items()
                                                 if "outpaint" not in v.default_for and v.arch != "srn"})
    with TestClient(create_app(Settings(models_dir=tmp_path))) as c:
        tasks = c.get("/api/models").json()["tasks"]
        assert not tasks["outpaint"]["available"] and "models dir" in tasks["outpaint"]["reason"]
        r = c.post("/api/outpaint", files={"image": ("a.png", png(image()))}, data={"right": "8"})
        assert "no outpaint model" in one_line_error(r, 404)


def test_page_docs_and_openapi_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for path in ("/", "/docs", "/static/app.js", "/static/style.css", "/static/api.js", "/static/api.css"):
        text = client.get(path).text
        assert "http://" not in text and "https://" not in text and "@import" not in text, path
    spec = client.get("/openapi.json").json()
    for path in ("/api/models", "/api/inpaint", "/api/outpaint", "/api/synthesize", "/api/styles/extract",
                 "/api/jobs/{job_id}"):
        assert path in spec["paths"]


# ----------------------------------------------------------------------------- runs
def test_inpaint_keeps_known_pixels_exactly(client):
    img, m = image(), hole()
    r = client.post("/api/inpaint", files={"image": ("a.png", png(img)), "mask": ("m.png", png(m))})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = decode(r.content)
    assert out.shape == img.shape
    assert (out[m == 0] == img[m == 0]).all()
    assert (out[m > 0] != img[m > 0]).any(axis=-1).mean() > 0.5
    info = json.loads(r.headers["x-gancanvas-info"])
    assert info["model"] == "deepfill-tiny" and info["hole_pixels"] == int((m > 0).sum())


def test_inpaint_as_a_job_with_progress_result_and_mask(client):
    img, m = image(seed=1), hole()
    rgba = np.dstack([m, m, m, np.full_like(m, 255)])  # an opaque RGBA mask, as a browser canvas writes it
    r = client.post("/api/inpaint?job=true", files=_inpaint(png(img), png(rgba)))
    assert r.status_code == 202 and r.headers["location"] == f"/api/jobs/{r.json()['id']}"
    assert r.json()["state"] in ("queued", "running", "done")
    job = wait(client, r.json())
    assert job["state"] == "done" and job["progress"] == 1.0 and job["elapsed_s"] >= 0
    out = decode(client.get(job["result"]).content)
    assert (out[m == 0] == img[m == 0]).all()
    assert (decode(client.get(job["mask"]).content) == m).all()
    assert one_line_error(client.get("/api/jobs/nope"), 404)


def test_exif_orientation_is_applied_like_the_cli(client):
    img = image(40, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", exif=exif)
    upright = np.rot90(img, k=-1)
    m = hole(48, 40)
    r = client.post("/api/inpaint", files=_inpaint(buf.getvalue(), png(m)))
    assert r.status_code == 200, r.text
    out = decode(r.content)
    assert out.shape == upright.shape and (out[m == 0] == upright[m == 0]).all()


def test_sketch_needs_a_guided_model(client):
    img, m = image(), hole()
    lines = np.zeros_like(m)
    files = {"image": ("a.png", png(img)), "mask": ("m.png", png(m)), "sketch": ("s.png", png(lines))}
    assert client.post("/api/inpaint", files=files).status_code == 200  # an empty sketch is no sketch
    lines[15, 12:30] = 255
    files["sketch"] = ("s.png", png(lines))
    assert "guidance lines" in one_line_error(client.post("/api/inpaint", files=files), 400)


def test_outpaint_pixels_and_percent(client):
    img = image(32, 28)
    r = client.post("/api/outpaint", files={"image": ("a.png", png(img))},
                    data={"top": "8", "left": "0", "bottom": "25%", "right": "12px"})
    assert r.status_code == 200, r.text
    out = decode(r.content)
    assert out.shape == (32 + 8 + 8, 28 + 12, 3)
    assert (out[8:40, 0:28] == img).all()
    assert json.loads(r.headers["x-gancanvas-info"])["margins"] == [8, 0, 8, 12]
    job = wait(client, client.post("/api/outpaint?job=true", files={"image": ("a.png", png(img))},
                                   data={"right": "10"}).json())
    mask = decode(client.get(job["mask"]).content)
    assert mask.shape == (32, 38) and (mask[:, 28:] == 255).all() and (mask[:, :28] == 0).all()


def test_outpaint_margin_errors(client):
    files = {"image": ("a.png", png(image(32, 28)))}
    assert "all four margins are 0" in one_line_error(client.post("/api/outpaint", files=files), 400)
    assert "cannot read" in one_line_error(client.post("/api/outpaint", files=files, data={"top": "x"}), 400)
    too_far = client.post("/api/outpaint", files=files, data={"right": "100"})
    assert "expands at most" in one_line_error(too_far, 400)
    big = client.post("/api/outpaint", files={"image": ("a.png", png(image(300, 300)))},
                      data={"right": "400"})
    assert "canvas" in one_line_error(big, 413)


def labels_map():
    lab = np.zeros((32, 40), np.uint8)
    lab[16:] = 5
    lab[:8, 30:] = 1
    return lab


def test_synthesize_grey_ids_and_palette_colours_agree(client):
    lab = labels_map()
    grey = client.post("/api/synthesize", files={"labels": ("l.png", png(lab))}, data={"seed": "3"})
    colour = client.post("/api/synthesize", files={"labels": ("l.png", png(PALETTE[lab]))},
                         data={"seed": "3"})
    assert grey.status_code == colour.status_code == 200
    assert decode(grey.content).shape == (32, 40, 3) and grey.content == colour.content
    other = client.post("/api/synthesize", files={"labels": ("l.png", png(lab))}, data={"seed": "4"})
    assert other.content != grey.content  # the seed draws the (random) default styles


def synth(client, style, lab=None, files=()):
    lab = labels_map() if lab is None else lab
    r = client.post("/api/synthesize", files=[("labels", ("l.png", png(lab))), *files],
                    data={"style": json.dumps(style)})
    assert r.status_code == 200, r.text
    return decode(r.content)


def test_synthesize_per_class_styles_and_blend(client):
    lab = labels_map()
    a = {"kind": "cluster", "k": 0}
    b = {"kind": "cluster", "k": 2}
    only_a = synth(client, {"sources": [a]})
    only_b = synth(client, {"sources": [b]})
    assert (only_a != only_b).any()
    # Class 5 from B, the rest (classes 0 and 1) from A: the same as B with 0 and 1 from A.
    mixed = synth(client, {"sources": [a, b], "regions": {"5": 1}})
    assert (mixed != only_a).any() and (mixed != only_b).any()
    assert (synth(client, {"sources": [a, b], "base": 1, "regions": {"0": 0, "1": 0}}) == mixed).all()
    assert set(np.unique(lab)) == {0, 1, 5}
    # The blend: t = 0 is the base, t = 1 the other source, exactly.
    assert (synth(client, {"sources": [a, b], "mix": {"with": 1, "t": 0}}) == only_a).all()
    assert (synth(client, {"sources": [a, b], "mix": {"with": 1, "t": 1}}) == only_b).all()
    half = synth(client, {"sources": [a, b], "mix": {"with": 1, "t": 0.5}})
    assert (half != only_a).any() and (half != only_b).any()


def test_synthesize_style_photo(client):
    lab = labels_map()
    photo = image(32, 40, seed=5)
    out = synth(client, {"sources": [{"kind": "image", "image": 0}]}, lab,
                [("style_images", ("p.png", png(photo)))])
    assert out.shape == (32, 40, 3)
    # Another size works with the photo's own label map (per-class styles), not without it.
    photo2, lab2 = image(24, 20, seed=6), np.full((24, 20), 5, np.uint8)
    files = [("style_images", ("p.png", png(photo2))), ("style_labels", ("l2.png", png(lab2)))]
    synth(client, {"sources": [{"kind": "cluster", "k": 0}, {"kind": "image", "image": 0, "labels": 0}],
                   "regions": {"5": 1}}, lab, files)
    r = client.post("/api/synthesize", files=[("labels", ("l.png", png(lab))), files[0]],
                    data={"style": json.dumps({"sources": [{"kind": "image", "image": 0}]})})
    assert "same size" in one_line_error(r, 400)


@pytest.mark.parametrize("style, needle", [
    ("{not json", "not valid JSON"),
    ('{"sources": [{"kind": "magic"}]}', "needs a 'kind'"),
    ('{"sources": [{"kind": "image", "image": 3}]}', "not an index into style_images"),
    ('{"sources": [{"kind": "cluster", "k": 0}], "mix": {"with": 0, "t": 2}}', "[0, 1]"),
    ('{"sources": [{"kind": "codes", "codes": 0}]}', "not an index into style_codes"),
    ('{"colour": 1}', "unknown keys"),
])
def test_synthesize_bad_style_recipes(client, style, needle):
    r = client.post("/api/synthesize", files={"labels": ("l.png", png(labels_map()))}, data={"style": style})
    assert needle in one_line_error(r, 400)


def test_labels_decode_turns_palette_colours_into_ids(client):
    lab = labels_map()
    r = client.post("/api/labels/decode", files={"labels": ("l.png", png(PALETTE[lab]))})
    assert r.status_code == 200 and (decode(r.content) == lab).all()
    smudged = PALETTE[lab].copy()
    smudged[0, 0] = (1, 2, 3)  # an anti-aliased edge pixel
    msg = one_line_error(client.post("/api/labels/decode", files={"labels": ("l.png", png(smudged))}), 400)
    assert "not in the palette" in msg


# ----------------------------------------------------------------------------- bad input
def png_header_only(width, height) -> bytes:
    """A PNG that claims width x height but holds a single tiny IDAT (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


class _Exploit:
    def __reduce__(self):  # would create a file if anything unpickled an upload
        return (open, ("/tmp/gancanvas-pickle-was-loaded", "w"))


def _inpaint(img=None, mask=None) -> dict:
    return {"image": ("a.png", png(image()) if img is None else img),
            "mask": ("m.png", png(hole()) if mask is None else mask)}


def _bad_requests():
    img = png(image())
    labels = {"labels": ("l.png", png(labels_map()))}
    return [
        ("non-image bytes", "/api/inpaint", _inpaint(b"GIF89a? no, just text"), {}, 415, "not an image"),
        ("a pickle as an image", "/api/inpaint", _inpaint(pickle.dumps(_Exploit())), {}, 415, "not an image"),
        ("huge dimensions", "/api/inpaint", _inpaint(png_header_only(100_000, 100_000)), {}, 413, "limit"),
        ("more pixels than allowed", "/api/inpaint", _inpaint(png(image(500, 500))), {}, 413, "500x500"),
        ("mask size mismatch", "/api/inpaint", _inpaint(mask=png(hole(20, 48))), {}, 400, "same size"),
        ("empty mask", "/api/inpaint", _inpaint(mask=png(hole() * 0)), {}, 400, "no hole"),
        ("truncated png", "/api/inpaint", _inpaint(img[: len(img) // 2]), {}, 400, "image"),
        ("unknown model", "/api/inpaint", _inpaint(), {"model": "nope"}, 404, "unknown model 'nope'"),
        ("path traversal", "/api/inpaint", _inpaint(), {"model": "../elsewhere/secret"}, 404, "unknown"),
        ("absolute path", "/api/inpaint", _inpaint(), {"model": "/etc/passwd"}, 404, "unknown model"),
        ("a file name, not a model name", "/api/inpaint", _inpaint(), {"model": "deepfill-tiny.safetensors"},
         404, "unknown model"),
        ("a broken model file", "/api/inpaint", _inpaint(), {"model": "broken"}, 404, "not available"),
        ("model of another task", "/api/inpaint", _inpaint(), {"model": "srn-tiny"}, 400, "/api/outpaint"),
        ("missing field", "/api/inpaint", {"image": ("a.png", img)}, {}, 422, "mask"),
        ("label ids out of range", "/api/synthesize",
         {"labels": ("l.png", png(np.full((8, 8), 40, np.uint8)))}, {}, 400, "outside this model's range"),
        ("label colours not in the palette", "/api/synthesize", {"labels": ("l.png", png(image(16, 16)))}, {},
         400, "not in the palette"),
        ("instance map of another size", "/api/synthesize",
         {**labels, "instances": ("i.png", png(np.zeros((8, 8), np.uint8)))}, {}, 400, "same size"),
    ]


@pytest.mark.parametrize("name, path, files, data, status, needle", _bad_requests(),
                         ids=[b[0] for b in _bad_requests()])
def test_bad_input_gets_a_one_line_4xx_and_the_server_keeps_serving(client, name, path, files, data, status,
                                                                      needle):
    r = client.post(path, files=files, data=data)
    assert needle in one_line_error(r, status)
    still_serving(client)


def test_nothing_uploaded_is_unpickled(client, tmp_path):
    import os

    marker = "/tmp/gancanvas-pickle-was-loaded"
    if os.path.exists(marker):
        os.remove(marker)
    payload = pickle.dumps(_Exploit())
    client.post("/api/synthesize", files={"labels": ("l.npy", payload), "instances": ("i.npy", payload)})
    client.post("/api/synthesize", files=[("labels", ("l.png", png(labels_map()))),
                                          ("style_codes", ("c.safetensors", payload))],
                data={"style": json.dumps({"sources": [{"kind": "codes", "codes": 0}]})})
    assert not os.path.exists(marker)


def test_request_body_limit_gives_413(models_dir):
    with TestClient(create_app(Settings(models_dir=models_dir, max_upload_bytes=20_000))) as c:
        big = png(image(120, 120, seed=2))
        assert len(big) > 20_000
        r = c.post("/api/inpaint", files={"image": ("a.png", big), "mask": ("m.png", png(hole()))})
        assert "limit of 20,000 bytes" in one_line_error(r, 413)
        # Without a Content-Length (chunked): cut off while reading.
        chunked = c.post("/api/inpaint", content=iter([b"-" * 8192] * 4),
                         headers={"content-type": "multipart/form-data; boundary=x"})
        assert "limit of 20,000 bytes" in one_line_error(chunked, 413)
        assert c.post("/api/inpaint", files={"image": ("a.png", png(image())),
                                             "mask": ("m.png", png(hole()))}).status_code == 200


def test_a_full_queue_answers_503_and_recovers(models_dir):
    with TestClient(create_app(Settings(models_dir=models_dir, queue_size=1))) as c:
        jobs = c.app.state.jobs
        gate = threading.Event()
        jobs.reserve()
        running = jobs.submit("test", "blocker", 1, lambda: gate.wait(30) and {"image": b""}, keep=False)
        while running.state != "running":
            time.sleep(0.01)
        jobs.reserve()  # the one waiting slot: taken by a second job behind the first
        waiting = jobs.submit("test", "blocker", 1, lambda: {"image": b""}, keep=False)
        files = {"image": ("a.png", png(image())), "mask": ("m.png", png(hole()))}
        r = c.post("/api/inpaint", files=files)
        assert "busy" in one_line_error(r, 503) and r.headers["retry-after"]
        status = jobs.status(waiting)
        assert status["state"] == "queued" and status["position"] == 1
        assert c.get("/api/health").json()["queue"]["rejected"] >= 1
        gate.set()
        waiting.future.result(timeout=30)
        assert c.post("/api/inpaint", files=files).status_code == 200


def test_an_internal_failure_is_one_line_500_and_the_worker_goes_on(models_dir, monkeypatch):
    with TestClient(create_app(Settings(models_dir=models_dir))) as c:
        catalog = c.app.state.catalog
        real = catalog.pipeline
        calls = []

        def flaky(entry):
            calls.append(entry.name)
            if len(calls) == 1:
                raise RuntimeError("simulated failure\nwith a second line")
            return real(entry)

        monkeypatch.setattr(catalog, "pipeline", flaky)
        files = {"image": ("a.png", png(image())), "mask": ("m.png", png(hole()))}
        assert "simulated failure" in one_line_error(c.post("/api/inpaint", files=files), 500)
        job = wait(c, c.post("/api/inpaint?job=true", files=files).json())
        assert job["state"] == "done"


def test_finished_jobs_are_kept_only_as_configured(models_dir):
    with TestClient(create_app(Settings(models_dir=models_dir, keep_results=1))) as c:
        files = {"image": ("a.png", png(image())), "mask": ("m.png", png(hole()))}
        first = wait(c, c.post("/api/inpaint?job=true", files=files).json())
        second = wait(c, c.post("/api/inpaint?job=true", files=files).json())
        assert c.get(first["result"]).status_code == 404
        assert c.get(second["result"]).status_code == 200


# ----------------------------------------------------------------------------- SEAN styles
def test_sean_style_codes_round_trip(tmp_path):
    assert "sean" in registry.architectures()
    cfg = {"label_nc": 10, "ngf": 4, "style_dim": 8, "encoder_ngf": 4, "spade_hidden": 8,
           "param_free_norm": "batch"}
    _save(tmp_path / "sean.safetensors", "sean", cfg, extra={"palette": "scenes"})
    lab, photo = labels_map(), image(32, 40, seed=7)
    with TestClient(create_app(Settings(models_dir=tmp_path))) as c:
        info = {m["name"]: m for m in c.get("/api/models").json()["models"]}["sean"]
        assert info["style"]["needs_style"] and info["style"]["per_region"]
        labels = ("labels", ("l.png", png(lab)))
        assert "needs a style" in one_line_error(c.post("/api/synthesize", files=[labels]), 400)
        r = c.post("/api/styles/extract", files=[labels, ("image", ("p.png", png(photo)))])
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        codes = r.content
        by_codes = synth(c, {"sources": [{"kind": "codes", "codes": 0}]}, lab,
                         [("style_codes", ("c.safetensors", codes))])
        by_photo = synth(c, {"sources": [{"kind": "image", "image": 0}]}, lab,
                         [("style_images", ("p.png", png(photo)))])
        assert (by_codes == by_photo).all()
        photo2 = image(32, 40, seed=8)
        recipe = {"sources": [{"kind": "image", "image": 0}, {"kind": "image", "image": 1}],
                  "regions": {"5": 1}, "mix": {"with": 1, "t": 0.25}}
        synth(c, recipe, lab, [("style_images", ("p.png", png(photo))),
                               ("style_images", ("q.png", png(photo2)))])
        # The codes the server composes: region 5 swapped in from B, then a quarter of the way to B.
        pipe = c.app.state.catalog.pipeline(c.app.state.catalog.find("sean", "synthesize"))
        got, _ = styling.build_style(pipe, styling.parse_recipe(json.dumps(recipe), 2, 0),
                                     lab.astype(np.int64), None, [photo, photo2], [], 0)
        a, b = pipe.extract_styles(lab, photo), pipe.extract_styles(lab, photo2)
        want = a.swap([5], b).interpolate(b, 0.25)
        assert torch.equal(got.codes, want.codes) and torch.equal(got.present, want.present)
        assert not torch.equal(got.codes, a.codes)
        bad = c.post("/api/synthesize", files=[labels, ("style_codes", ("c.st", b"junk"))],
                     data={"style": json.dumps({"sources": [{"kind": "codes", "codes": 0}]})})
        msg = one_line_error(bad, 400)
        assert "style_codes[0]" in msg and "/tmp" not in msg


def test_serve_defaults_to_loopback():
    from gancanvas.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.device) == ("127.0.0.1", 7860, "cpu")
    assert args.max_pixels > 0 and args.max_upload_bytes > 0 and args.queue_size > 0
