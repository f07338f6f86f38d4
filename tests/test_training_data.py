"""Training data: the validation split is held out, device-side crops are real crops, time-based decay."""

import numpy as np
import pytest
import torch
from PIL import Image

from attncomp.errors import ImageError
from attncomp.image import read_split
from attncomp.training.data import CropPool, ImageFolderData
from attncomp.training.module import time_decay

from .helpers import smooth_image


@pytest.fixture
def folder(tmp_path):
    for seed, (h, w) in enumerate([(70, 90), (64, 64), (80, 66)]):
        Image.fromarray(smooth_image(h, w, seed=seed)).save(tmp_path / f"img{seed}.png")
    (tmp_path / "split.txt").write_text("# validation\n\nimg1\n  img2  \n")
    return tmp_path


def test_a_split_file_lists_stems_and_skips_comments_and_blank_lines(folder):
    assert read_split(folder / "split.txt") == {"img1", "img2"}
    with pytest.raises(ImageError, match="cannot read the split file"):
        read_split(folder / "missing.txt")


def test_the_split_is_held_out_of_training_and_validated_on(folder):
    data = ImageFolderData(train_dir=str(folder), val_split=str(folder / "split.txt"), crop_size=32)
    data.setup("fit")
    assert [tuple(t.shape) for t in data.train_images] == [(3, 70, 90)]
    assert sorted(tuple(t.shape) for t in data.val_images) == [(3, 64, 64), (3, 80, 66)]


def test_a_split_that_names_no_image_of_the_folder_leaves_no_validation(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("other") / "split.txt"
    other.write_text("somebody_else\n")
    data = ImageFolderData(train_dir=str(folder), val_split=str(other), crop_size=32)
    data.setup("fit")
    assert len(data.train_images) == 3 and data.val_images == []


def test_device_crops_are_crops_of_the_images_flipped_or_not():
    images = [torch.from_numpy(smooth_image(h, w, seed=s)).permute(2, 0, 1).contiguous()
              for s, (h, w) in enumerate([(40, 50), (33, 60)])]
    pool = CropPool.of(images)
    crops = pool.sample(64, 32, torch.Generator().manual_seed(0))
    assert crops.shape == (64, 3, 32, 32) and crops.dtype == torch.float32
    flips_seen = set()
    for crop in (crops * 255).round().to(torch.uint8):
        found = None
        for image in images:
            for top in range(image.shape[1] - 31):
                for left in range(image.shape[2] - 31):
                    window = image[:, top : top + 32, left : left + 32]
                    for flip in [(), (1,), (2,), (1, 2)]:
                        if torch.equal(window.flip(flip) if flip else window, crop):
                            found = flip
                            break
                    if found is not None:
                        break
                if found is not None:
                    break
            if found is not None:
                break
        assert found is not None, "a sampled crop is not a (flipped) window of any image"
        flips_seen.add(found)
    assert flips_seen == {(), (1,), (2,), (1, 2)}


def test_the_same_generator_seed_gives_the_same_crops():
    pool = CropPool.of([torch.from_numpy(smooth_image(40, 40)).permute(2, 0, 1).contiguous()])
    first = pool.sample(4, 16, torch.Generator().manual_seed(3))
    assert torch.equal(first, pool.sample(4, 16, torch.Generator().manual_seed(3)))


class FakeTimer:
    def __init__(self, elapsed, remaining):
        self.elapsed, self.remaining = elapsed, remaining

    def time_elapsed(self, stage):
        return self.elapsed

    def time_remaining(self, stage):
        return self.remaining


def test_time_decay_holds_then_decays_over_the_wall_clock_budget():
    timer = FakeTimer(0.0, 100.0)
    factor = time_decay(timer, decay_start=0.5, final_ratio=0.1)
    assert factor(0) == 1.0
    timer.elapsed, timer.remaining = 50.0, 50.0
    assert factor(123) == 1.0
    timer.elapsed, timer.remaining = 75.0, 25.0
    assert factor(7) == pytest.approx(np.sqrt(0.1))
    timer.elapsed, timer.remaining = 100.0, 0.0
    assert factor(9) == pytest.approx(0.1)
