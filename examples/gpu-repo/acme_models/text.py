"""The text classifier: a BERT-style encoder (transformers' BertModel from a config, random weights) and our head."""

import torch
from torch import nn

from acme_models.heads import ClassifierHead

#: The encoder's shape: 10 layers of hidden size 512 (one of Google's BERT miniatures, L=10 H=512).
ENCODER = {"hidden_size": 512, "num_hidden_layers": 10, "num_attention_heads": 8, "intermediate_size": 2048}


class TextClassifier(nn.Module):
    """BERT encoder, mean pooling over the unmasked tokens, and the classifier head."""

    def __init__(self, encoder: nn.Module, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = ClassifierHead(hidden, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def text_classifier(num_classes: int = 4, small: bool = False) -> TextClassifier:
    """The classifier with random weights; ``small`` divides the widths by 8 (CPU-sized)."""
    try:
        from transformers import BertConfig, BertModel
    except ImportError as exc:
        raise ImportError(
            f"the text classifier needs transformers ({exc}); install it with `pip install transformers`"
        ) from None
    shape = dict(ENCODER)
    if small:
        shape.update(
            hidden_size=shape["hidden_size"] // 8,
            intermediate_size=shape["intermediate_size"] // 8,
            num_attention_heads=2,
        )
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, attn_implementation="sdpa", **shape)
    return TextClassifier(BertModel(config, add_pooling_layer=False), shape["hidden_size"], num_classes)
