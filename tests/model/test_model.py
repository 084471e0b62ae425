"""The network: shapes, torchvision weight compatibility, and the anomaly map definition."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from rd_edge.core.errors import CheckpointError
from rd_edge.model import ModelConfig, RDInference, ReverseDistillation, gaussian_kernel_1d
from rd_edge.model.anomaly_map import AnomalyMapHead
from rd_edge.model.resnet import BACKBONES, ResNetEncoder, backbone_spec
from rd_edge.model.weights import load_teacher_weights


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_shapes_for_every_backbone(backbone):
    model = RDInference(ModelConfig(backbone=backbone, image_size=(64, 96))).eval()
    e = backbone_spec(backbone).expansion
    with torch.no_grad():
        teacher, student = model.rd(model.normalize(torch.rand(2, 3, 64, 96)))
        amap, score = model(torch.rand(2, 3, 64, 96))
    expected = [(2, 64 * e, 16, 24), (2, 128 * e, 8, 12), (2, 256 * e, 4, 6)]
    assert [tuple(t.shape) for t in teacher] == expected
    assert [tuple(s.shape) for s in student] == expected
    assert amap.shape == (2, 1, 64, 96) and score.shape == (2,)
    assert torch.allclose(score, amap.amax(dim=(1, 2, 3)))


def test_image_size_must_fit_the_architecture():
    with pytest.raises(ValueError, match="multiples of 32"):
        ModelConfig(backbone="resnet18", image_size=100)
    with pytest.raises(ValueError, match="unknown backbone"):
        ModelConfig(backbone="vgg16")


def torchvision_resnet_state_dict(blocks, bottleneck, width_per_group=64, seed=0):
    """A state dict with torchvision's key names and shapes (written from torchvision's layout,
    not from our modules), including layer4 and fc, which the teacher must ignore."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g)

    def bn(name, c):
        sd[f"{name}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.bias"] = torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(7)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    exp = 4 if bottleneck else 1
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for bi in range(n):
            p = f"layer{li}.{bi}"
            stride = 2 if (li > 1 and bi == 0) else 1
            if bottleneck:
                width = planes * width_per_group // 64
                conv(f"{p}.conv1", width, inplanes, 1)
                bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3)
                bn(f"{p}.bn2", width)
                conv(f"{p}.conv3", planes * 4, width, 1)
                bn(f"{p}.bn3", planes * 4)
            else:
                conv(f"{p}.conv1", planes, inplanes, 3)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3)
                bn(f"{p}.bn2", planes)
            if bi == 0 and (stride != 1 or inplanes != planes * exp):
                conv(f"{p}.downsample.0", planes * exp, inplanes, 1)
                bn(f"{p}.downsample.1", planes * exp)
            inplanes = planes * exp
    sd["fc.weight"] = torch.randn(1000, 512 * exp, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


@pytest.mark.parametrize(
    "backbone,blocks,bottleneck,wpg",
    [
        ("resnet18", (2, 2, 2, 2), False, 64),
        ("wide_resnet50_2", (3, 4, 6, 3), True, 128),
    ],
)
def test_torchvision_state_dict_loads_into_teacher(tmp_path, backbone, blocks, bottleneck, wpg):
    sd = torchvision_resnet_state_dict(blocks, bottleneck, wpg)
    path = tmp_path / f"{backbone}.pth"
    torch.save(sd, path)
    teacher = ResNetEncoder(backbone_spec(backbone))
    load_teacher_weights(teacher, path)
    ours = teacher.state_dict()
    assert set(ours) == {k for k in sd if not k.startswith(("layer4.", "fc."))}
    for k, v in ours.items():
        assert torch.equal(v, sd[k]), k


def test_wrong_teacher_weights_name_the_bad_keys(tmp_path):
    sd = torchvision_resnet_state_dict((2, 2, 2, 2), False)
    del sd["layer2.0.conv1.weight"]
    sd["layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    teacher = ResNetEncoder(backbone_spec("resnet18"))
    with pytest.raises(CheckpointError) as err:
        load_teacher_weights(teacher, path)
    assert "layer2.0.conv1.weight" in str(err.value)
    assert "layer1.0.conv2.weight" in str(err.value) and "(64, 64, 3, 3)" in str(err.value)
    with pytest.raises(CheckpointError, match="wide_resnet50_2|do not fit"):
        load_teacher_weights(ResNetEncoder(backbone_spec("wide_resnet50_2")), path)


def test_teacher_stays_in_eval_mode_and_frozen():
    rd = ReverseDistillation("resnet18").train()
    assert not rd.teacher.training and rd.student.training and rd.ocbe.training
    assert not any(p.requires_grad for p in rd.teacher.parameters())
    assert all(p.requires_grad for p in rd.trainable_parameters())


def test_gaussian_kernel_matches_scipy():
    k = gaussian_kernel_1d(4.0).numpy()
    assert k.shape == (33,)
    impulse = np.zeros(65)
    impulse[32] = 1
    np.testing.assert_allclose(k, gaussian_filter(impulse, 4.0)[16:49], atol=1e-7)


def reference_map(teacher, student, size):
    """RD4AD's reference: torch cosine_similarity, upsample, sum, then scipy's gaussian_filter and max."""
    total = 0
    for ft, fs in zip(teacher, student):
        d = 1 - F.cosine_similarity(ft, fs, dim=1).unsqueeze(1)
        total = total + F.interpolate(d, size=size, mode="bilinear", align_corners=True)
    maps = np.stack([gaussian_filter(m[0].numpy().astype(np.float64), sigma=4) for m in total])
    return maps, maps.reshape(len(maps), -1).max(axis=1)


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_anomaly_map_equals_scipy_reference(size):
    torch.manual_seed(0)
    h, w = size
    chans = [8, 16, 32]
    teacher = [torch.relu(torch.randn(2, c, h // s, w // s)) for c, s in zip(chans, (4, 8, 16))]
    student = [torch.relu(t + 0.5 * torch.randn_like(t)) for t in teacher]
    head = AnomalyMapHead(size, chans, sigma=4.0)
    amap, score = head(teacher, student)
    ref_map, ref_score = reference_map(teacher, student, size)
    assert amap.shape == (2, 1, h, w)
    np.testing.assert_allclose(amap[:, 0].numpy(), ref_map, atol=1e-4)
    np.testing.assert_allclose(score.numpy(), ref_score, atol=1e-4)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# torchvision's published totals minus fc and layer4 (the teacher stops at layer3), worked by hand:
# resnet18 11,689,512 - fc 513,000 - layer4 8,393,728; wide_resnet50_2 68,883,240 - fc 2,049,000
# - layer4 41,971,712 (width 2 x planes: 1024 in the 3x3 convs of layer4).
TEACHER_PARAMETERS = {"resnet18": 2_782_784, "wide_resnet50_2": 24_862_528}


@pytest.mark.parametrize("backbone", sorted(TEACHER_PARAMETERS))
def test_teacher_parameter_count_is_torchvisions_up_to_layer3(backbone):
    assert _count(ResNetEncoder(backbone_spec(backbone))) == TEACHER_PARAMETERS[backbone]


@pytest.mark.parametrize(
    "backbone,block,ocbe_blocks,ocbe,student",
    [
        (
            "resnet18",
            "DeBasicBlock",
            2,
            11_680_000,
            3_703_168,
        ),  # RD4AD: BN_layer(AttnBasicBlock, 2), de_resnet18
        ("resnet50", "DeBottleneck", 3, 30_829_568, 15_821_824),  # BN_layer(AttnBottleneck, 3), de_resnet50
    ],
)
def test_ocbe_and_student_follow_the_rd4ad_blocks_per_backbone(backbone, block, ocbe_blocks, ocbe, student):
    """Block kinds and counts as in RD4AD's code; the parameter counts pin them (a Bottleneck
    student for resnet18 or a third OCBE block changes them by millions)."""
    rd = ReverseDistillation(backbone)
    assert type(rd.student.layer1[0]).__name__ == block and len(rd.ocbe.bn_layer) == ocbe_blocks
    assert (_count(rd.ocbe), _count(rd.student)) == (ocbe, student)


def test_cosine_loss_by_hand():
    """RD4AD's loss: per scale the batch mean of 1 - cos(flattened maps), summed over scales.
    Scale 1: cos = 0 and 1 -> mean 0.5; scale 2: cos = -1 and 9/25 -> mean (2 + 0.64) / 2."""
    from rd_edge.model import cosine_loss

    t1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).reshape(2, 2, 1, 1)
    s1 = torch.tensor([[0.0, 1.0], [2.0, 2.0]]).reshape(2, 2, 1, 1)
    t2 = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 4.0]]).reshape(2, 3, 1, 1)
    s2 = torch.tensor([[-2.0, -4.0, 0.0], [3.0, 4.0, 0.0]]).reshape(2, 3, 1, 1)
    loss = cosine_loss([t1, t2], [s1, s2])
    assert float(loss) == pytest.approx(0.5 + (2.0 + 0.64) / 2, abs=1e-6)
