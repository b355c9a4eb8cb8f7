import torch

from forgetting.core.augment import BatchMaker, sample_params

MEAN, STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]


def images(n=16, size=32):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


def maker(x, **kw):
    return BatchMaker(x, MEAN, STD, torch.device("cpu"), torch.float32, **kw)


def test_shapes_dtype_layout():
    m = maker(images())
    params = m.sample(16, torch.Generator().manual_seed(1))
    batch = m.batch(torch.arange(16), params)
    assert batch.shape == (16, 3, 32, 32) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_crop_and_flip_match_a_per_image_reference():
    x = images()
    m = maker(x)
    params = m.sample(16, torch.Generator().manual_seed(2))
    idx = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    out = m.raw(idx, params)
    padded = torch.nn.functional.pad(x.float(), (4, 4, 4, 4), mode="reflect").to(torch.uint8)
    for k, i in enumerate(idx.tolist()):
        dy, dx = int(params.dy[k]), int(params.dx[k])
        ref = padded[i, :, dy:dy + 32, dx:dx + 32]
        if params.flip[k]:
            ref = ref.flip(-1)
        assert torch.equal(out[k], ref)


def test_same_generator_seed_same_batch():
    m = maker(images())
    a = m.batch(torch.arange(8), m.sample(8, torch.Generator().manual_seed(5)))
    b = m.batch(torch.arange(8), m.sample(8, torch.Generator().manual_seed(5)))
    c = m.batch(torch.arange(8), m.sample(8, torch.Generator().manual_seed(6)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_offsets_cover_81_positions_and_flip_half():
    p = sample_params(40000, 32, 4, 0, torch.Generator().manual_seed(0))
    positions = torch.bincount(p.dy * 9 + p.dx, minlength=81)
    assert len(positions) == 81 and positions.min() > 0
    expected = 40000 / 81
    assert ((positions - expected).abs() < 5 * expected ** 0.5).all()
    assert abs(p.flip.float().mean().item() - 0.5) < 0.01


def test_no_augment_is_the_normalised_image():
    x = images()
    m = BatchMaker(x, [10.0, 20.0, 30.0], [2.0, 4.0, 5.0], torch.device("cpu"), torch.float32,
                   augment=False)
    out = m.batch(torch.tensor([3, 5]))
    ref = (x[[3, 5]].float() - torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)) \
        / torch.tensor([2.0, 4.0, 5.0]).view(1, 3, 1, 1)
    assert torch.allclose(out, ref)


def test_raw_without_params_is_the_centre_crop_of_the_padded_set():
    x = images()
    m = maker(x)
    assert torch.equal(m.raw(torch.arange(16), None), x)


def test_cutout_zeroes_one_square_per_image():
    x = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    m = maker(x, cutout=8)
    out = m.batch(torch.arange(4), m.sample(4, torch.Generator().manual_seed(0)))
    zero = (out == 0).all(dim=1)  # (B, S, S)
    assert zero.sum(dim=(1, 2)).tolist() == [64] * 4
    for k in range(4):
        rows = zero[k].any(1).nonzero().flatten()
        cols = zero[k].any(0).nonzero().flatten()
        assert len(rows) == 8 and len(cols) == 8
        assert rows[-1] - rows[0] == 7 and cols[-1] - cols[0] == 7
