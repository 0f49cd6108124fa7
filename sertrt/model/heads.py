"""Classifier heads: (hidden (B, T, H), frame_lengths (B,)) -> logits (B, num_labels), padding masked everywhere.

HGFM follows Zhang et al. eqs. (3)-(6):
    F   = hidden W_fc                      (B, T, L)       eq. 3
    w_c = BiGRU(F) = [w_l | w_r]           (B, T, 2 h1)    eq. 4, split into the two directions
    att = sum_i softmax_i(v . tanh(W q + U k_i)) k_i       eq. 5, per direction
    v_out = [w_l, w_r, att_l, att_r, F]    (B, 4 h1 + L)   eq. 6, then FC -> logits
w_l and w_r are each direction's final state (also the query q), F is mean-pooled over valid frames.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.dims import HeadDims
from .layers import MaskedBiRNN, last_valid, lengths_to_mask, masked_mean


class PerceptronAttention(nn.Module):
    def __init__(self, size: int, attention_size: int):
        super().__init__()
        self.W = nn.Linear(size, attention_size, bias=False)
        self.U = nn.Linear(size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """query (B, h), keys (B, T, h), mask (B, T, 1) -> (B, h)."""
        scores = self.v(torch.tanh(self.W(query).unsqueeze(1) + self.U(keys)))  # (B, T, 1)
        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        alpha = torch.softmax(scores, dim=1)
        return (alpha * keys).sum(1)


class HGFMHead(nn.Module):
    def __init__(self, dims: HeadDims):
        super().__init__()
        h1, L = dims.hidden_size, dims.proj_size
        self.proj = nn.Linear(dims.input_size, L)
        self.gru = MaskedBiRNN(nn.GRU, L, h1)
        self.att_l = PerceptronAttention(h1, dims.attention_size)
        self.att_r = PerceptronAttention(h1, dims.attention_size)
        self.dropout = nn.Dropout(dims.dropout)
        self.out = nn.Linear(4 * h1 + L, dims.num_labels)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, hidden.shape[1]).unsqueeze(-1)  # (B, T, 1)
        F = self.proj(hidden) * mask  # (B, T, L)
        fw, bw = self.gru(F, lengths)  # (B, T, h1) each
        w_l, w_r = last_valid(fw, lengths), bw[:, 0]  # each direction's final state
        att_l = self.att_l(w_l, fw, mask)
        att_r = self.att_r(w_r, bw, mask)
        v_out = torch.cat([w_l, w_r, att_l, att_r, masked_mean(F, mask)], dim=-1)  # (B, 4 h1 + L)
        return self.out(self.dropout(v_out))


class FCNHead(nn.Module):
    """Fully convolutional baseline: 3 x (Conv1d k=3, ReLU), masked global average pool, linear."""

    def __init__(self, dims: HeadDims):
        super().__init__()
        c = dims.hidden_size
        self.convs = nn.ModuleList([nn.Conv1d(dims.input_size if i == 0 else c, c, 3, padding=1) for i in range(3)])
        self.dropout = nn.Dropout(dims.dropout)
        self.out = nn.Linear(c, dims.num_labels)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, hidden.shape[1]).unsqueeze(-1)
        x = hidden
        for conv in self.convs:
            # Zero the padding before every conv so edge frames see what a lone utterance sees.
            x = torch.relu(conv((x * mask).transpose(1, 2)).transpose(1, 2))
        return self.out(self.dropout(masked_mean(x, mask)))


class CNNSelfAttentionDNNHead(nn.Module):
    """CNN -> multi-head self-attention (padding keys masked) -> masked mean pool -> 2-layer DNN."""

    def __init__(self, dims: HeadDims):
        super().__init__()
        c = dims.hidden_size
        self.convs = nn.ModuleList([nn.Conv1d(dims.input_size, c, 3, padding=1), nn.Conv1d(c, c, 3, padding=1)])
        self.attn = nn.MultiheadAttention(c, dims.num_heads, dropout=dims.dropout, batch_first=True)
        self.norm = nn.LayerNorm(c)
        self.dnn = nn.Sequential(nn.Linear(c, c), nn.ReLU(), nn.Dropout(dims.dropout), nn.Linear(c, dims.num_labels))

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lengths, hidden.shape[1]).unsqueeze(-1)
        x = hidden
        for conv in self.convs:
            x = torch.relu(conv((x * mask).transpose(1, 2)).transpose(1, 2))
        # Additive float mask (not bool) keeps the exported graph free of NonZero/GatherND.
        key_bias = (1.0 - mask.squeeze(-1)) * torch.finfo(x.dtype).min
        attended, _ = self.attn(x, x, x, key_padding_mask=key_bias, need_weights=False)
        x = self.norm(x + attended)
        return self.dnn(masked_mean(x, mask))


class LinearHead(nn.Module):
    """Logistic regression: frames mean-pooled over valid frames, standardised (BatchNorm's running
    statistics, no affine), one linear layer. With the stats-lr upstream: the classical floor."""

    def __init__(self, dims: HeadDims):
        super().__init__()
        self.norm = nn.BatchNorm1d(dims.input_size, affine=False)
        self.out = nn.Linear(dims.input_size, dims.num_labels)
        self.fixed_statistics = False  # set by standardise(): training uses them too, never batch statistics

    def standardise(self, pooled: torch.Tensor) -> None:
        """Standardise with the mean and variance of these pooled features, (N, D), from now on. Training batches
        are grouped by length, so their own statistics are biased (duration is one of the floor's features)."""
        self.norm.running_mean.copy_(pooled.mean(0))
        self.norm.running_var.copy_(pooled.var(0))
        self.fixed_statistics = True

    def forward(self, hidden: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(frame_lengths, hidden.shape[1]).unsqueeze(-1).to(hidden.dtype)
        pooled = masked_mean(hidden, mask)  # (B, D)
        if self.training and (pooled.shape[0] == 1 or self.fixed_statistics):  # the running statistics, not the batch's
            pooled = nn.functional.batch_norm(pooled, self.norm.running_mean, self.norm.running_var, training=False)
        else:
            pooled = self.norm(pooled)
        return self.out(pooled)


def build_head(dims: HeadDims) -> nn.Module:
    heads = {"hgfm": HGFMHead, "fcn": FCNHead, "cnn-sa-dnn": CNNSelfAttentionDNNHead, "lr": LinearHead}
    return heads[dims.kind](dims)
