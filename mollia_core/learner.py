"""The active-learning model: a text classifier trained with the robust loss of Eq. 9.

Two modes behind one interface (:class:`Learner`, scikit-learn conventions):

- :class:`FastLearner` — sparse TF-IDF word and character n-grams plus frozen, cached encoder
  embeddings (:mod:`mollia_core.text_member`, the features of MoLAM's text member) and a linear
  head (or one hidden layer). For interactive use on a CPU: a fit on ~500 texts takes a second or two.
- :class:`FineTuneLearner` — the paper's recipe: the whole encoder is fine-tuned, cold-started from
  the pretrained weights at every fit, max length 128, AdamW 5e-5, up to 40 epochs, early stopping
  with patience 10 on a validation split carved from the training labels.

Both train with ``W_d * CE(y+) + lambda * L_neg`` (:func:`mollia_core.losses.robust_loss`): pass
``negative_mask`` (y-), ``sample_weight`` (W_d) and ``negative_weight`` (lambda) to :meth:`Learner.fit`;
leaving them out turns negative learning and the discrepancy weight off.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from .encoder import DEFAULT_BACKBONE, PAPER_MAX_LENGTH, embed_texts, load_encoder, mean_pool, torch_threads
from .losses import robust_loss

__all__ = [
    "ClassifierHead",
    "FastLearner",
    "FineTuneLearner",
    "Learner",
    "LearnerError",
    "make_learner",
]


class LearnerError(ValueError):
    """Bad input to a learner (shapes, label range, weights), or use before ``fit``."""


class Learner(ABC):
    """The AL model. ``fit`` on labeled texts, then ``predict_proba`` / ``embed`` on any texts."""

    n_labels: int
    random_state: int

    @abstractmethod
    def fit(
        self,
        texts: Sequence[str],
        y: np.ndarray,
        *,
        negative_mask: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
        negative_weight: float = 0.0,
    ) -> Learner:
        """Train from scratch on ``texts`` with labels ``y`` (n,) in ``[0, n_labels)``.

        ``negative_mask`` (n, n_labels) bool marks the negative labels y-, ``sample_weight`` (n,) is
        W_d (Eq. 7), ``negative_weight`` is lambda (Eq. 9).
        """

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, (n, n_labels)."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The representation the classifier sees, (n, d): CoreSet's geometry."""

    @abstractmethod
    def predict_proba_perturbed(
        self, texts: Sequence[str], n_samples: int, noise_scale: float, random_state: int | None = None
    ) -> np.ndarray:
        """Class probabilities under ``n_samples`` random weight perturbations, (S, n, n_labels).

        Each weight tensor W gets Gaussian noise of norm ``noise_scale * ||W||`` (Li et al. 2024,
        "Deep active learning with noise stability", AAAI): NoiseStability's perturbed models and
        BEMPS' posterior samples.
        """

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Most probable label index per text, (n,)."""
        return self.predict_proba(texts).argmax(axis=1)


def _check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise LearnerError(f"{what} must be a sequence of strings, not one string: wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise LearnerError(f"{what}[{i}] is {type(text).__name__}, not str: every text must be a string")
    return texts


def _check_training_input(texts, y, negative_mask, sample_weight, negative_weight, n_labels):
    texts = _check_texts(texts)
    if not texts:
        raise LearnerError("fit needs at least one labeled text, got none")
    y = np.asarray(y)
    if y.shape != (len(texts),):
        raise LearnerError(f"y must have one label per text: {len(texts)} texts but y has shape {y.shape}")
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
        raise LearnerError("y must hold integer label indices (the label's position in the label set, not its name)")
    if y.min() < 0 or y.max() >= n_labels:
        raise LearnerError(f"labels in y must lie in [0, {n_labels}), got values from {y.min()} to {y.max()}")
    if negative_mask is not None:
        negative_mask = np.asarray(negative_mask, dtype=bool)
        if negative_mask.shape != (len(texts), n_labels):
            raise LearnerError(
                f"negative_mask must have shape (n_texts, n_labels) = {(len(texts), n_labels)}, "
                f"got {negative_mask.shape}"
            )
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != (len(texts),):
            raise LearnerError(f"sample_weight must have one weight per text ({len(texts)}), got {sample_weight.shape}")
        if not np.all(np.isfinite(sample_weight)) or sample_weight.min() < 0:
            raise LearnerError("sample_weight must be finite and non-negative")
    if not np.isfinite(negative_weight) or negative_weight < 0:
        raise LearnerError(f"negative_weight (lambda) must be finite and non-negative, got {negative_weight}")
    return texts, y.astype(np.int64), negative_mask, sample_weight


def _single_torch_thread():
    """Small-tensor work (the head) runs on one thread.

    A second intra-op thread buys nothing on (550, 384) tensors, and on a busy CPU every op then waits
    for it: measured 10x slower with 2 threads than with 1 on this project's shared 2-core machine.
    """
    return torch_threads(1)


class ClassifierHead(nn.Module):
    """Linear layer, or one hidden ReLU layer then linear, on (optionally standardised) features."""

    def __init__(self, in_features: int, n_labels: int, hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(in_features, hidden), nn.ReLU()]
        layers += [nn.Dropout(dropout), nn.Linear(hidden or in_features, n_labels)]
        self.net = nn.Sequential(*layers)
        self.register_buffer("shift", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))

    def standardize_on(self, features: torch.Tensor) -> None:
        """Centre and scale inputs by the training features' statistics (frozen features only)."""
        self.shift.copy_(features.mean(dim=0))
        self.scale.copy_(features.std(dim=0, unbiased=False).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.shift) / self.scale)


@torch.no_grad()
def _perturb_weights(module: nn.Module, noise_scale: float, generator: torch.Generator) -> None:
    """Li et al. 2024: add to every weight W Gaussian noise rescaled to norm ``noise_scale * ||W||``."""
    for sub in module.modules():
        weight = getattr(sub, "weight", None)
        if isinstance(weight, torch.Tensor):
            noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
            weight.add_(noise * (noise_scale * weight.norm() / noise.norm().clamp_min(1e-12)))


def _tensors(y, negative_mask, sample_weight, device=None):
    return (
        torch.as_tensor(y, dtype=torch.long, device=device),
        None if negative_mask is None else torch.as_tensor(negative_mask, device=device),
        None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32, device=device),
    )


class _HeadLearner(Learner):
    """Shared by both modes: features of the texts -> :class:`ClassifierHead` -> softmax."""

    def __init__(self, n_labels: int, backbone: str, random_state: int):
        if n_labels < 2:
            raise LearnerError(f"a classifier needs at least 2 labels, got n_labels={n_labels}")
        self.n_labels = int(n_labels)
        self.backbone = backbone
        self.random_state = random_state
        self.head_: ClassifierHead | None = None

    @abstractmethod
    def _features(self, texts: list[str]) -> torch.Tensor:
        """(n, d) float features the head reads (frozen embeddings, or the fine-tuned encoder's)."""

    def _check_fitted(self) -> None:
        if self.head_ is None:
            raise LearnerError(f"this {type(self).__name__} is not fitted yet: call fit(texts, y) first")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.n_labels))
        features = self._features(texts)
        self.head_.eval()
        with torch.no_grad(), _single_torch_thread():
            logits = self.head_(features.to(self.head_.shift.device))
        return torch.softmax(logits.double(), dim=1).cpu().numpy()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        return self._features(_check_texts(texts)).float().cpu().numpy()

    def predict_proba_perturbed(
        self, texts: Sequence[str], n_samples: int, noise_scale: float, random_state: int | None = None
    ) -> np.ndarray:
        """See :meth:`Learner.predict_proba_perturbed`. The head's weights are perturbed.

        For :class:`FastLearner` the head is the whole trainable model, as in Li et al.; for
        :class:`FineTuneLearner` perturbing the encoder too would cost ``n_samples`` encoder passes
        over the pool, so the head on the fine-tuned features is perturbed instead.
        """
        self._check_fitted()
        if n_samples < 1 or not noise_scale >= 0:
            raise LearnerError(f"need n_samples >= 1 and noise_scale >= 0, got {n_samples} and {noise_scale}")
        texts = _check_texts(texts)
        features = self._features(texts).double().cpu()
        generator = torch.Generator().manual_seed(int(np.random.default_rng(random_state).integers(2**62)))
        base = copy.deepcopy(self.head_).double().cpu().eval()
        out = np.empty((n_samples, len(texts), self.n_labels))
        with torch.no_grad(), _single_torch_thread():
            for s in range(n_samples):
                noisy = copy.deepcopy(base)
                _perturb_weights(noisy, noise_scale, generator)
                out[s] = torch.softmax(noisy(features), dim=1).numpy()
        return out


class FastLearner(_HeadLearner):
    """The text classifier of :mod:`mollia_core.text_member`, trained with the robust loss (Eq. 9).

    Features: TF-IDF word 1-2-grams + char_wb 2-5-grams + the frozen, cached MiniLM embeddings
    (:class:`~mollia_core.text_member.TextFeaturizer`, the same features as MoLAM's text member),
    vocabulary and IDF fitted on the training texts. Head: linear (or one hidden layer), loss
    ``mean(W_d * CE + lambda * L_neg) + ||W||^2 / (2 C n)`` minimised by full-batch L-BFGS.

    The L2 penalty puts the optimal first-layer weights in the span of the n training rows (the
    representer theorem), so the head is trained, exactly, on the texts' coordinates in that span
    (:func:`~mollia_core.text_member.span_projection`): n values per text instead of ~10^5, which
    keeps a fit and a prediction over a 10,000-text pool within seconds. ``embed`` returns those
    coordinates (the geometry the classifier sees). ``C = 100``: what cross-validation on the seeds
    chose for the text member (:func:`~mollia_core.text_member.choose_C`) on every TREC seed set
    tried; ``C=None`` chooses it that way at every fit (slower). Nothing is tuned on evaluation labels.
    """

    def __init__(
        self,
        n_labels: int,
        backbone: str = DEFAULT_BACKBONE,
        random_state: int = 0,
        *,
        hidden: int = 0,
        C: float | None = 100.0,
        max_iter: int = 500,
        embeddings: bool = True,
    ):
        super().__init__(n_labels, backbone, random_state)
        self.hidden = hidden
        self.C = C
        self.max_iter = max_iter
        self.embeddings = embeddings

    def _fit_features(self, texts: list[str], y: np.ndarray, sample_weight: np.ndarray | None) -> torch.Tensor:
        """Fit the featurizer and the span basis on the training texts; their features (n, r)."""
        from .text_member import TextFeaturizer, choose_C, gram, span_projection

        self.featurizer_ = TextFeaturizer(self.backbone, self.embeddings).fit(texts)
        self.train_features_ = self.featurizer_.transform(texts)
        train_gram = gram(self.train_features_)
        self.projection_ = span_projection(train_gram)
        self.C_ = float(self.C) if self.C is not None else choose_C(
            train_gram, y, self.n_labels, (1.0, 10.0, 100.0), self.random_state, sample_weight
        )
        return torch.from_numpy((train_gram @ self.projection_).astype(np.float32))

    def _features(self, texts: list[str]) -> torch.Tensor:
        from .text_member import gram

        if not texts:
            return torch.zeros((0, self.projection_.shape[1]))
        kernel = gram(self.featurizer_.transform(texts), self.train_features_)
        return torch.from_numpy((kernel @ self.projection_).astype(np.float32))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """As :meth:`_HeadLearner.predict_proba`, with the head's first layer carried over to the full
        features (:func:`~mollia_core.text_member.full_width_weights`): one sparse product per text,
        not one per training text."""
        from .text_member import full_width_weights

        self._check_fitted()
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.n_labels))
        layers = list(self.head_.net)
        first = next(i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear))
        weight = layers[first].weight.detach().double().numpy()
        folded = full_width_weights(self.train_features_, self.projection_, weight)
        hidden = self.featurizer_.transform(texts) @ folded + layers[first].bias.detach().double().numpy()
        with torch.no_grad(), _single_torch_thread():
            rest = copy.deepcopy(nn.Sequential(*layers[first + 1 :])).double()
            logits = rest(torch.from_numpy(np.asarray(hidden)))
        return torch.softmax(logits, dim=1).numpy()

    def fit(self, texts, y, *, negative_mask=None, sample_weight=None, negative_weight=0.0) -> FastLearner:
        texts, y, negative_mask, sample_weight = _check_training_input(
            texts, y, negative_mask, sample_weight, negative_weight, self.n_labels
        )
        features = self._fit_features(texts, y, sample_weight)
        y_t, mask_t, weight_t = _tensors(y, negative_mask, sample_weight)
        penalty = 1.0 / (2.0 * self.C_ * len(texts))
        with torch.random.fork_rng(devices=[]), _single_torch_thread():
            torch.manual_seed(self.random_state)
            head = ClassifierHead(features.shape[1], self.n_labels, self.hidden, dropout=0.0)
            weights = [p for name, p in head.named_parameters() if name.endswith("weight")]
            optimizer = torch.optim.LBFGS(
                head.parameters(), lr=1.0, max_iter=self.max_iter, tolerance_grad=1e-6, tolerance_change=1e-9,
                history_size=20, line_search_fn="strong_wolfe",
            )
            head.train()

            def closure():
                optimizer.zero_grad()
                loss = robust_loss(head(features), y_t, mask_t, weight_t, negative_weight)
                loss = loss + penalty * sum((w**2).sum() for w in weights)
                loss.backward()
                return loss

            optimizer.step(closure)
        self.head_ = head.eval()
        return self


def _validation_split(y: np.ndarray, fraction: float, min_texts: int, random_state: int):
    """Indices (train, validation) for early stopping, carved from the training labels.

    ``fraction`` of the texts (at least 2) go to validation, stratified by label where every label
    present has 2+ texts, drawn with ``random_state``. Below ``min_texts`` texts there is no split.
    """
    n = len(y)
    if n < min_texts or fraction <= 0:
        return np.arange(n), np.arange(0)
    from sklearn.model_selection import train_test_split

    n_val = max(2, int(round(fraction * n)))
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and n_val >= np.count_nonzero(counts) else None
    train, val = train_test_split(np.arange(n), test_size=n_val, stratify=stratify, random_state=random_state)
    return np.sort(train), np.sort(val)


class _EncoderClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.head = ClassifierHead(encoder.config.hidden_size, n_labels, hidden=0, dropout=dropout)

    def pooled(self, batch) -> torch.Tensor:
        return mean_pool(self.encoder(**batch).last_hidden_state, batch["attention_mask"])

    def forward(self, batch) -> torch.Tensor:
        return self.head(self.pooled(batch))


class FineTuneLearner(_HeadLearner):
    """The paper's AL model: the encoder fine-tuned end to end, cold-started at every fit.

    Recipe: max length 128, AdamW lr 5e-5, batches of 16, up to 40 epochs, early stopping with
    patience 10 on the validation loss (Eq. 9 with the given labels and weights: the only labels
    there are). The validation split is carved from the training labels: ``validation_fraction``
    (10%, at least 2 texts) stratified by label where possible, drawn with ``random_state``; with
    fewer than ``min_texts_for_validation`` texts there is none and all epochs run. The weights of
    the best validation epoch are restored; the validation texts are not trained on. Uses CUDA where
    present; ``n_threads`` sets torch's CPU threads while it works (default: ``MOLLIA_TORCH_THREADS``,
    else torch's own; on a busy shared CPU, 1 thread was 5x faster than 2 here).
    """

    def __init__(
        self,
        n_labels: int,
        backbone: str = DEFAULT_BACKBONE,
        random_state: int = 0,
        *,
        max_length: int = PAPER_MAX_LENGTH,
        learning_rate: float = 5e-5,
        max_epochs: int = 40,
        patience: int = 10,
        batch_size: int = 16,
        validation_fraction: float = 0.1,
        min_texts_for_validation: int = 10,
        dropout: float = 0.1,
        device: str | None = None,
        n_threads: int | None = None,
    ):
        super().__init__(n_labels, backbone, random_state)
        self.max_length = max_length
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.min_texts_for_validation = min_texts_for_validation
        self.dropout = dropout
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.n_threads = n_threads
        self.model_: _EncoderClassifier | None = None
        self.history_: list[dict] = []

    def _batches(self, texts: list[str], rows: np.ndarray):
        tokenizer = load_encoder(self.backbone)[0]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            batch = tokenizer(
                [texts[i] for i in chunk], padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            yield torch.from_numpy(chunk), batch

    def _features(self, texts: list[str]) -> torch.Tensor:
        self.model_.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = torch.zeros(len(texts), self.model_.encoder.config.hidden_size)
        with torch.no_grad(), torch_threads(self.n_threads):
            for rows, batch in self._batches(texts, order):
                out[rows] = self.model_.pooled(batch).float().cpu()
        return out

    def fit(self, texts, y, *, negative_mask=None, sample_weight=None, negative_weight=0.0) -> FineTuneLearner:
        texts, y, negative_mask, sample_weight = _check_training_input(
            texts, y, negative_mask, sample_weight, negative_weight, self.n_labels
        )
        train_rows, val_rows = _validation_split(
            y, self.validation_fraction, self.min_texts_for_validation, self.random_state
        )
        y_t, mask_t, weight_t = _tensors(y, negative_mask, sample_weight, self.device)

        def loss_on(model, rows, batch):
            rows = rows.to(self.device)
            return robust_loss(
                model(batch),
                y_t[rows],
                None if mask_t is None else mask_t[rows],
                None if weight_t is None else weight_t[rows],
                negative_weight,
            )

        rng = np.random.default_rng(self.random_state)
        with torch.random.fork_rng(devices=[]), torch_threads(self.n_threads):
            torch.manual_seed(self.random_state)
            encoder = copy.deepcopy(load_encoder(self.backbone)[1])  # cold start: pretrained weights
            model = _EncoderClassifier(encoder, self.n_labels, self.dropout).to(self.device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=self.learning_rate)
            best_loss, best_state, stale = float("inf"), None, 0
            self.history_ = []
            for epoch in range(self.max_epochs):
                model.train()
                train_loss = 0.0
                for rows, batch in self._batches(texts, rng.permutation(train_rows)):
                    loss = loss_on(model, rows, batch)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    train_loss += loss.item() * len(rows)
                record = {"epoch": epoch + 1, "train_loss": train_loss / len(train_rows)}
                if len(val_rows):
                    model.eval()
                    with torch.no_grad():
                        val_loss = sum(loss_on(model, r, b).item() * len(r) for r, b in self._batches(texts, val_rows))
                    record["val_loss"] = val_loss / len(val_rows)
                    if record["val_loss"] < best_loss:
                        best_loss, stale = record["val_loss"], 0
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    else:
                        stale += 1
                self.history_.append(record)
                if len(val_rows) and stale >= self.patience:
                    break
            if best_state is not None:
                model.load_state_dict(best_state)
        self.model_ = model.eval()
        self.head_ = model.head
        return self


def make_learner(
    mode: Literal["fast", "finetune"],
    n_labels: int,
    backbone: str = DEFAULT_BACKBONE,
    random_state: int = 0,
    **kw,
) -> Learner:
    """A :class:`FastLearner` (``"fast"``) or :class:`FineTuneLearner` (``"finetune"``); ``kw`` go to it."""
    normalized = str(mode).lower().replace("-", "").replace("_", "")
    classes = {"fast": FastLearner, "finetune": FineTuneLearner}
    if normalized not in classes:
        raise LearnerError(f"unknown learner mode {mode!r}: choose 'fast' (frozen embeddings) or 'finetune'")
    return classes[normalized](n_labels, backbone=backbone, random_state=random_state, **kw)
