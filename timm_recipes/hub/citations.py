"""The papers behind each ingredient of a recipe, as short references and BibTeX, for model cards.

:func:`citations_for` picks the ones a recipe actually uses (the architecture's paper, timm, and each regulariser,
schedule and test-time trick that is switched on), so a card cites what produced its weights and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CITATIONS", "Citation", "citations_for"]


@dataclass(frozen=True)
class Citation:
    """One reference: what it is cited for, a one-line reference, a link and its BibTeX entry."""

    ingredient: str
    reference: str
    url: str
    bibtex: str


CITATIONS: dict[str, Citation] = {
    "resnet": Citation(
        "ResNet",
        "He, Zhang, Ren, Sun, Deep Residual Learning for Image Recognition, CVPR 2016",
        "https://arxiv.org/abs/1512.03385",
        """@inproceedings{he2016deep,
  title={Deep Residual Learning for Image Recognition},
  author={He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={770--778},
  year={2016}
}""",
    ),
    "efficientnet": Citation(
        "EfficientNet",
        "Tan, Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019",
        "https://arxiv.org/abs/1905.11946",
        """@inproceedings{tan2019efficientnet,
  title={{EfficientNet}: Rethinking Model Scaling for Convolutional Neural Networks},
  author={Tan, Mingxing and Le, Quoc},
  booktitle={Proceedings of the 36th International Conference on Machine Learning (ICML)},
  pages={6105--6114},
  year={2019}
}""",
    ),
    "timm": Citation(
        "timm",
        "Wightman, PyTorch Image Models, GitHub 2019",
        "https://github.com/huggingface/pytorch-image-models",
        """@misc{rw2019timm,
  author={Wightman, Ross},
  title={PyTorch Image Models},
  year={2019},
  publisher={GitHub},
  journal={GitHub repository},
  doi={10.5281/zenodo.4414861},
  howpublished={\\url{https://github.com/huggingface/pytorch-image-models}}
}""",
    ),
    "stochastic_depth": Citation(
        "Stochastic depth",
        "Huang, Sun, Liu, Sedra, Weinberger, Deep Networks with Stochastic Depth, ECCV 2016",
        "https://arxiv.org/abs/1603.09382",
        """@inproceedings{huang2016deep,
  title={Deep Networks with Stochastic Depth},
  author={Huang, Gao and Sun, Yu and Liu, Zhuang and Sedra, Daniel and Weinberger, Kilian Q.},
  booktitle={European Conference on Computer Vision (ECCV)},
  pages={646--661},
  year={2016}
}""",
    ),
    "dropout": Citation(
        "Dropout",
        "Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, Dropout, JMLR 2014",
        "https://jmlr.org/papers/v15/srivastava14a.html",
        """@article{srivastava2014dropout,
  title={Dropout: A Simple Way to Prevent Neural Networks from Overfitting},
  author={Srivastava, Nitish and Hinton, Geoffrey and Krizhevsky, Alex and Sutskever, Ilya and Salakhutdinov, Ruslan},
  journal={Journal of Machine Learning Research},
  volume={15},
  number={56},
  pages={1929--1958},
  year={2014}
}""",
    ),
    "label_smoothing": Citation(
        "Label smoothing",
        "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, Rethinking the Inception Architecture for Computer Vision, "
        "CVPR 2016",
        "https://arxiv.org/abs/1512.00567",
        """@inproceedings{szegedy2016rethinking,
  title={Rethinking the Inception Architecture for Computer Vision},
  author={Szegedy, Christian and Vanhoucke, Vincent and Ioffe, Sergey and Shlens, Jon and Wojna, Zbigniew},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={2818--2826},
  year={2016}
}""",
    ),
    "mixup": Citation(
        "Mixup",
        "Zhang, Cisse, Dauphin, Lopez-Paz, mixup: Beyond Empirical Risk Minimization, ICLR 2018",
        "https://arxiv.org/abs/1710.09412",
        """@inproceedings{zhang2018mixup,
  title={mixup: Beyond Empirical Risk Minimization},
  author={Zhang, Hongyi and Cisse, Moustapha and Dauphin, Yann N. and Lopez-Paz, David},
  booktitle={International Conference on Learning Representations (ICLR)},
  year={2018}
}""",
    ),
    "cutmix": Citation(
        "CutMix",
        "Yun, Han, Oh, Chun, Choe, Yoo, CutMix: Regularization Strategy to Train Strong Classifiers with Localizable "
        "Features, ICCV 2019",
        "https://arxiv.org/abs/1905.04899",
        """@inproceedings{yun2019cutmix,
  title={{CutMix}: Regularization Strategy to Train Strong Classifiers with Localizable Features},
  author={Yun, Sangdoo and Han, Dongyoon and Oh, Seong Joon and Chun, Sanghyuk and Choe, Junsuk and Yoo, Youngjoon},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages={6023--6032},
  year={2019}
}""",
    ),
    "cutout": Citation(
        "Cutout",
        "DeVries, Taylor, Improved Regularization of Convolutional Neural Networks with Cutout, 2017",
        "https://arxiv.org/abs/1708.04552",
        """@article{devries2017improved,
  title={Improved Regularization of Convolutional Neural Networks with Cutout},
  author={DeVries, Terrance and Taylor, Graham W.},
  journal={arXiv preprint arXiv:1708.04552},
  year={2017}
}""",
    ),
    "random_erasing": Citation(
        "Random Erasing",
        "Zhong, Zheng, Kang, Li, Yang, Random Erasing Data Augmentation, AAAI 2020",
        "https://arxiv.org/abs/1708.04896",
        """@inproceedings{zhong2020random,
  title={Random Erasing Data Augmentation},
  author={Zhong, Zhun and Zheng, Liang and Kang, Guoliang and Li, Shaozi and Yang, Yi},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  volume={34},
  number={07},
  pages={13001--13008},
  year={2020}
}""",
    ),
    "ema": Citation(
        "EMA of the weights (Polyak averaging)",
        "Polyak, Juditsky, Acceleration of Stochastic Approximation by Averaging, SIAM J. Control Optim. 1992",
        "https://doi.org/10.1137/0330046",
        """@article{polyak1992acceleration,
  title={Acceleration of Stochastic Approximation by Averaging},
  author={Polyak, Boris T. and Juditsky, Anatoli B.},
  journal={SIAM Journal on Control and Optimization},
  volume={30},
  number={4},
  pages={838--855},
  year={1992}
}""",
    ),
    "fixres": Citation(
        "FixRes",
        "Touvron, Vedaldi, Douze, Jégou, Fixing the Train-Test Resolution Discrepancy, NeurIPS 2019",
        "https://arxiv.org/abs/1906.06423",
        """@inproceedings{touvron2019fixing,
  title={Fixing the Train-Test Resolution Discrepancy},
  author={Touvron, Hugo and Vedaldi, Andrea and Douze, Matthijs and J{\\'e}gou, Herv{\\'e}},
  booktitle={Advances in Neural Information Processing Systems (NeurIPS)},
  volume={32},
  year={2019}
}""",
    ),
    "cosine": Citation(
        "Cosine schedule",
        "Loshchilov, Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, ICLR 2017",
        "https://arxiv.org/abs/1608.03983",
        """@inproceedings{loshchilov2017sgdr,
  title={{SGDR}: Stochastic Gradient Descent with Warm Restarts},
  author={Loshchilov, Ilya and Hutter, Frank},
  booktitle={International Conference on Learning Representations (ICLR)},
  year={2017}
}""",
    ),
    "one_cycle": Citation(
        "One-cycle schedule",
        "Smith, Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2019",
        "https://arxiv.org/abs/1708.07120",
        """@inproceedings{smith2019super,
  title={Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates},
  author={Smith, Leslie N. and Topin, Nicholay},
  booktitle={Artificial Intelligence and Machine Learning for Multi-Domain Operations Applications},
  series={Proceedings of SPIE},
  volume={11006},
  year={2019}
}""",
    ),
    "warmup": Citation(
        "Learning-rate warm-up",
        "Goyal et al., Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour, 2017",
        "https://arxiv.org/abs/1706.02677",
        """@article{goyal2017accurate,
  title={Accurate, Large Minibatch {SGD}: Training {ImageNet} in 1 Hour},
  author={Goyal, Priya and Doll{\\'a}r, Piotr and Girshick, Ross and Noordhuis, Pieter and Wesolowski, Lukasz and
    Kyrola, Aapo and Tulloch, Andrew and Jia, Yangqing and He, Kaiming},
  journal={arXiv preprint arXiv:1706.02677},
  year={2017}
}""",
    ),
    "rsb": Citation(
        "The timm training recipe (ResNet strikes back)",
        "Wightman, Touvron, Jégou, ResNet strikes back: An improved training procedure in timm, 2021",
        "https://arxiv.org/abs/2110.00476",
        """@article{wightman2021resnet,
  title={{ResNet} Strikes Back: An Improved Training Procedure in timm},
  author={Wightman, Ross and Touvron, Hugo and J{\\'e}gou, Herv{\\'e}},
  journal={arXiv preprint arXiv:2110.00476},
  year={2021}
}""",
    ),
    "torchvision_recipe": Citation(
        "The torchvision training recipe",
        "Vryniotis, How to Train State-Of-The-Art Models Using TorchVision's Latest Primitives, PyTorch blog 2021",
        "https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-torchvision-latest-primitives/",
        """@misc{vryniotis2021train,
  title={How to Train State-Of-The-Art Models Using {TorchVision}'s Latest Primitives},
  author={Vryniotis, Vasilis},
  howpublished={PyTorch blog,
    \\url{https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-torchvision-latest-primitives/}},
  year={2021}
}""",
    ),
}


def _architecture_key(architecture: str) -> str | None:
    name = architecture.removeprefix("recipe_")
    if name.startswith("resnet"):
        return "resnet"
    if name.startswith("efficientnet"):
        return "efficientnet"
    return None


def citations_for(architecture: str, recipe: Any | None, variant: str) -> list[Citation]:
    """The references for weights of ``architecture`` trained with ``recipe`` (a ``Recipe`` or None).

    ``None`` rates in the recipe mean "the model's default"; the recipe models default to stochastic depth on (and
    EfficientNets to dropout on), so those are cited for them.
    """
    keys = [k for k in (_architecture_key(architecture), "timm") if k]
    if recipe is not None:
        m, aug, mix, optim, sched = recipe.model, recipe.aug, recipe.mix, recipe.optim, recipe.schedule
        is_recipe_model = m.name.startswith("recipe_")
        uses = {
            "stochastic_depth": (m.drop_path_rate or 0) > 0 or (m.drop_path_rate is None and is_recipe_model),
            "dropout": (m.drop_rate or 0) > 0 or (m.drop_rate is None and "efficientnet" in m.name),
            "label_smoothing": optim.label_smoothing > 0,
            "mixup": mix.enabled and mix.mixup_alpha > 0,
            "cutmix": mix.enabled and mix.cutmix_alpha > 0,
            "cutout": aug.cutout_p > 0,
            "random_erasing": aug.cutout_p > 0,
            "ema": recipe.ema.enabled or variant == "ema",
            "fixres": recipe.fixres.enabled or variant == "fixres",
            "cosine": sched.name == "cosine",
            "one_cycle": sched.name == "one_cycle",
            "warmup": sched.warmup_epochs > 0,
            "rsb": True,
            "torchvision_recipe": True,
        }
        keys += [key for key, used in uses.items() if used]
    else:
        keys += [key for key in ("ema", "fixres") if key == variant]
    return [CITATIONS[key] for key in dict.fromkeys(keys)]
