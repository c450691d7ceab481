"""A compact ResNet50 in PyTorch (torchvision's layout and module names, random weights).

torchvision is not a dependency, so the benchmark defines the network itself: bottleneck
blocks [3, 4, 6, 3], stride on the 3x3 convolution (ResNet v1.5), 25.6 M parameters.
``width`` scales every channel count (``width=1/8`` makes the tiny ``--quick`` variant).
"""
from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet50 (He et al. 2016), NCHW input, logits output."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0,
                 layers: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        base = max(4, int(64 * width))
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(base, layers[0], 1)
        self.layer2 = self._stage(base * 2, layers[1], 2)
        self.layer3 = self._stage(base * 4, layers[2], 2)
        self.layer4 = self._stage(base * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(base * 8 * 4, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # damp each residual branch: activations stay bounded
            if isinstance(m, Bottleneck):
                nn.init.constant_(m.bn3.weight, 0.2)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride,
                                                 bias=False), nn.BatchNorm2d(planes * 4))
        out = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        out += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(seed: int = 0, width: float = 1.0, num_classes: int = 1000) -> ResNet50:
    """A seeded random ResNet50 in eval mode (the global torch RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet50(num_classes=num_classes, width=width).eval()
