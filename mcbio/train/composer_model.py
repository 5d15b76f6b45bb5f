"""The Composer model for continued pretraining: one encoder, CLM or MLM by phase."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from composer.models import ComposerModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mcbio.model.attention import AttentionSwitch, document_position_ids, encoder_inputs, segment_ids
from mcbio.model.build import is_modernbert
from mcbio.model.freezing import parse_layer_ranges, set_frozen_layers
from mcbio.model.objectives import IGNORE_INDEX, clm_labels, mlm_mask, sample_generators
from mcbio.train.phases import PlannedPhase


class EncoderPretrainingModel(ComposerModel):
    """Wraps a ``*ForMaskedLM``. In CLM phases its MLM head is the LM head: logits at
    position i are scored against token i+1 of the same document, with causal attention."""

    def __init__(
        self,
        hf_model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data_seed: int,
        causal_local_window: str = "half",
        document_masking: bool = True,
    ) -> None:
        super().__init__()
        self.model = hf_model
        self.switch = AttentionSwitch(hf_model, causal_local_window, document_masking) if is_modernbert(hf_model) else None
        self.data_seed = data_seed
        self.document_masking = document_masking
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.register_buffer("special_ids", torch.tensor(sorted(set(tokenizer.all_special_ids))), persistent=False)
        self.phase: PlannedPhase | None = None

    # ------------------------------------------------------------------ phases
    def set_phase(self, phase: PlannedPhase) -> None:
        objective = phase.config.objective
        if objective == "clm" and self.switch is None:
            raise ValueError(f"phase '{phase.name}' is causal, but {type(self.model).__name__} has no attention switch (ModernBERT only)")
        if self.switch is not None:
            self.switch.set_mode("causal" if objective == "clm" else "bidirectional")
        num_layers = self.model.config.num_hidden_layers
        set_frozen_layers(self.model, parse_layer_ranges(phase.config.frozen_layers, num_layers))
        self.phase = phase

    def current_phase(self) -> PlannedPhase:
        if self.phase is None:
            raise RuntimeError("no training phase set: PhaseSwitch (or set_phase) must run before the first batch")
        return self.phase

    @property
    def objective(self) -> str:
        return self.current_phase().config.objective

    # ------------------------------------------------------------------ forward
    def _encode(self, input_ids: torch.Tensor, document_ids: torch.Tensor) -> torch.Tensor:
        if self.switch is not None:
            kwargs = encoder_inputs(input_ids, document_ids, self.model.config._attn_implementation, self.document_masking)
        else:
            kwargs = self._generic_inputs(input_ids, document_ids)
        return self.model(**kwargs).logits

    def _generic_inputs(self, input_ids: torch.Tensor, document_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Other encoders (RoBERTa/CamemBERT, MLM-only): a 3D (batch, query, key) mask keeps packed
        documents apart, and RoBERTa-style positions restart per document after ``padding_idx``
        (per row without document masking, as on the ModernBERT backends)."""
        keys = document_ids != 0
        segments = segment_ids(document_ids, self.document_masking)
        mask = (segments[:, :, None] == segments[:, None, :]) & keys[:, None, :]
        kwargs = {"input_ids": input_ids, "attention_mask": mask.long()}
        pad = getattr(self.model.config, "pad_token_id", None)
        if self.model.config.model_type in ("roberta", "camembert", "xlm-roberta") and pad is not None:
            kwargs["position_ids"] = torch.where(keys, document_position_ids(segments) + pad + 1, pad)
        return kwargs

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        input_ids, document_ids = batch["input_ids"], batch["document_ids"]
        phase = self.current_phase()
        if phase.config.objective == "clm":
            labels = clm_labels(input_ids, document_ids)
        else:
            gens = sample_generators(self.data_seed, batch["sample_index"].cpu(), phase.index)
            input_ids, labels = mlm_mask(input_ids, document_ids, self.special_ids, self.mask_id, self.vocab_size,
                                         phase.config.mlm_probability, gens)
        return {"logits": self._encode(input_ids, document_ids), "labels": labels}

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, labels = outputs["logits"], outputs["labels"]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)

    def get_metrics(self, is_train: bool = False) -> dict:
        return {}
