"""fast.ai's side-on training transforms in torchvision + PIL, shared by the Python
peers of bench/data and bench/learn (the same augmentation fastvision applies)."""
import random

import torchvision.transforms as T

IMAGENET_NORM = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class RandomScale:
    """Shorter side to sz * U(1, max_zoom), as fast.ai's RandomScale."""

    def __init__(self, sz, max_zoom):
        self.sz, self.max_zoom = sz, max_zoom

    def __call__(self, img):
        return T.functional.resize(img, int(self.sz * random.uniform(1, self.max_zoom)))


def side_on(size, max_zoom=1.1):
    """Scale with random zoom, rotation up to 10 degrees (p=0.75), lighting 0.05, flip, random crop, normalize."""
    return T.Compose([
        RandomScale(size, max_zoom),
        T.RandomApply([T.RandomRotation(10)], p=0.75),
        T.ColorJitter(brightness=0.05, contrast=0.05),
        T.RandomHorizontalFlip(),
        T.RandomCrop(size),
        T.ToTensor(),
        IMAGENET_NORM,
    ])
