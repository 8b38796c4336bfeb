"""FunASR emotion2vec model folders of random weights, in FunASR's format (config.yaml +
model.pt), shared by the emotion2vec and the MEMO release tests."""

import textwrap

import torch

# emotion2vec's own layout (post-LN, layer-norm conv stack, per-head ALiBi scale, extra
# tokens, a pre-training decoder), and the other branches the architecture allows
EMOTION2VEC = dict(layer_norm_first="false", extractor_mode="layer_norm",
                   conv_pos_pre_ln="false", conv_pos_width=15, conv_pos_depth=3,
                   per_layer="false", alibi_heads=4, extra_tokens=3,
                   decoder=textwrap.indent(textwrap.dedent("""\
                              decoder:
                                decoder_dim: 16
                                decoder_groups: 4
                                decoder_kernel: 3
                                decoder_layers: 2
                                input_dropout: 0.1
                                add_positions_masked: false
                                add_positions_all: false
                                decoder_residual: true
                                projection_layers: 1
                                projection_ratio: 2.0"""), "      "))
OTHER = dict(layer_norm_first="true", extractor_mode="default", conv_pos_pre_ln="true",
             conv_pos_width=8, conv_pos_depth=2, per_layer="true", alibi_heads=2,
             extra_tokens=0, decoder="      decoder: null")


def config_yaml(layout, *, embed_dim=32, num_heads=4, depth=2, prenet_depth=2,
                mlp_ratio=4.0):
  # FunASR's config.yaml keys (emotion2vec_base's file, at tiny widths)
  return textwrap.dedent("""\
      model: Emotion2vec
      model_conf:
        loss_beta: 0.0
        loss_scale: null
        depth: {depth}
        start_drop_path_rate: 0.0
        end_drop_path_rate: 0.0
        num_heads: {num_heads}
        norm_eps: 1e-05
        norm_affine: true
        encoder_dropout: 0.1
        post_mlp_drop: 0.1
        attention_dropout: 0.1
        activation_dropout: 0.0
        dropout_input: 0.0
        layerdrop: 0.05
        embed_dim: {embed_dim}
        mlp_ratio: {mlp_ratio}
        layer_norm_first: {layer_norm_first}
        average_top_k_layers: {depth}
        end_of_block_targets: false
        clone_batch: 8
        normalize: true
        modalities:
          audio:
            type: AUDIO
            prenet_depth: {prenet_depth}
            prenet_layerdrop: 0.05
            prenet_dropout: 0.1
            start_drop_path_rate: 0.0
            end_drop_path_rate: 0.0
            num_extra_tokens: {extra_tokens}
            init_extra_token_zero: true
            use_alibi_encoder: true
            alibi_scale: 1.0
            learned_alibi: false
            alibi_max_pos: null
            learned_alibi_scale: true
            learned_alibi_scale_per_head: true
            learned_alibi_scale_per_layer: {per_layer}
            num_alibi_heads: {alibi_heads}
            model_depth: {depth}
            local_grad_mult: 1.0
            extractor_mode: {extractor_mode}
            feature_encoder_spec: '[(16, 10, 5)] + [(16, 3, 2)] * 2 + [(16,2,2)]'
            conv_pos_width: {conv_pos_width}
            conv_pos_groups: 4
            conv_pos_depth: {conv_pos_depth}
            conv_pos_pre_ln: {conv_pos_pre_ln}
      {decoder}
      """).format(**layout, embed_dim=embed_dim, num_heads=num_heads, depth=depth,
                  prenet_depth=prenet_depth, mlp_ratio=mlp_ratio)


def reference(config_text, seed=0):
  from funasr.models.emotion2vec.model import Emotion2vec as Reference
  from omegaconf import OmegaConf
  torch.manual_seed(seed)
  # read as FunASR reads config.yaml (OmegaConf: `1e-05` is a float, not a string)
  conf = OmegaConf.to_container(OmegaConf.create(config_text))["model_conf"]
  model = Reference(model_conf=conf, vocab_size=9).eval()
  with torch.no_grad():   # every weight random, so each mapping is exercised
    for name, p in model.named_parameters():
      if "alibi_scale" in name:
        p.copy_(0.5 + torch.rand_like(p))
      elif name.endswith("bias") or "norm" in name or "extra_tokens" in name:
        p.add_(0.1 * torch.randn_like(p))
  return model


def write_folder(folder, layout, *, wrap=True, seed=0, **widths):
  """FunASR's emotion2vec folder of random weights; returns the PyTorch model."""
  text = config_yaml(layout, **widths)
  model = reference(text, seed)
  folder.mkdir(parents=True)
  (folder / "config.yaml").write_text(text)
  state = model.state_dict()
  torch.save({"model": state} if wrap else state, folder / "model.pt")
  (folder / "tokens.txt").write_text("\n".join(["angry", "disgusted", "fearful", "happy",
                                                "neutral", "other", "sad", "surprised",
                                                "<unk>"]) + "\n")
  return model


