import dataclasses

import torch

from polyspeech.ctc.conformer import ConformerCTC
from polyspeech.ctc.train import _CtcLoss
from tests.conftest import TINY_CONFORMER as TINY


def test_shapes_and_lengths():
    model = ConformerCTC(TINY).eval()
    model.add_language("eng", 7)
    model.add_language("cmn", 11)
    features = torch.randn(2, 100, 80)
    log_probs, lengths = model(features, torch.tensor([100, 61]), "cmn")
    assert log_probs.shape == (2, 24, 11)
    assert lengths.tolist() == [24, 14]  # 4x subsampling: 40 ms frames
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 24), atol=1e-5)
    assert model(features, torch.tensor([100, 100]), "eng")[0].shape[-1] == 7


def test_padding_does_not_change_the_output():
    model = ConformerCTC(TINY).eval()
    model.add_language("eng", 7)
    short = torch.randn(1, 61, 80)
    padded = torch.cat([short, torch.randn(1, 39, 80)], dim=1)
    alone, _ = model(short, torch.tensor([61]), "eng")
    batched, _ = model(torch.cat([padded, torch.randn(1, 100, 80)]), torch.tensor([61, 100]), "eng")
    assert torch.allclose(alone[0], batched[0, :14], atol=1e-5)


def test_new_adapter_starts_as_identity():
    model = ConformerCTC(TINY).eval()
    model.add_language("eng", 7)
    adapter = model.adapters["eng"]
    x = torch.randn(3, 16)
    assert torch.equal(adapter.layers[0](x), torch.zeros(3, 16))


def test_tied_heads_score_each_language_over_its_own_rows_and_untie_exactly():
    model = ConformerCTC(TINY).eval()
    model.add_language("eng", 3)
    model.add_language("rus", 4)
    model.tie_heads({"eng": [0, 1, 2], "rus": [0, 3, 4, 5]}, 6)
    features, lengths = torch.randn(1, 50, 80), torch.tensor([50])
    tied = {lang: model(features, lengths, lang)[0] for lang in ["eng", "rus"]}
    assert tied["eng"].shape[-1] == 3 and tied["rus"].shape[-1] == 4
    assert torch.allclose(tied["rus"].exp().sum(-1), torch.ones(1, 11), atol=1e-5)
    model.untie_heads()
    assert model.shared_head is None
    for lang in ["eng", "rus"]:
        assert torch.allclose(model(features, lengths, lang)[0], tied[lang], atol=1e-6)


def _tied_pair() -> ConformerCTC:
    """eng and rus, tied, with adapters that differ, so that a mix-up would show."""
    model = ConformerCTC(TINY).eval()
    model.add_language("eng", 3)
    model.add_language("rus", 4)
    for adapter in model.adapters.values():
        for layer in adapter.layers:
            torch.nn.init.normal_(layer[3].weight)
    model.tie_heads({"eng": [0, 1, 2], "rus": [0, 3, 4, 5]}, 6)
    return model


def test_rows_of_a_mixed_batch_score_as_their_own_language_alone():
    model = _tied_pair()
    features, lengths = torch.randn(3, 60, 80), torch.tensor([60, 41, 52])
    mixed, mixed_lengths = model(features, lengths, ["rus", "eng", "rus"])
    assert mixed.shape == (3, model.output_lengths(torch.tensor(60)).item(), 4)
    for row, (lang, width) in enumerate([("rus", 4), ("eng", 3), ("rus", 4)]):
        frames = mixed_lengths[row]
        alone, _ = model(features[row : row + 1, : lengths[row]], lengths[row : row + 1], lang)
        assert torch.allclose(mixed[row, :frames, :width], alone[0], atol=1e-5)
        assert torch.all(mixed[row, :frames, width:].exp() < 1e-6)  # padding columns


def test_training_loss_of_a_mixed_batch_is_the_mean_of_each_row_alone():
    model = _tied_pair()
    features, lengths = torch.randn(3, 60, 80), torch.tensor([60, 41, 52])
    langs = ["rus", "eng", "rus"]
    targets = [torch.tensor([1, 3, 2]), torch.tensor([2, 1]), torch.tensor([3])]
    mixed, characters = _CtcLoss(model)(features, lengths, langs, targets, upsample=True)
    alone = []
    for row, lang in enumerate(langs):
        log_probs, out_lengths = model(
            features[row : row + 1, : lengths[row]], lengths[row : row + 1], lang
        )
        loss = torch.nn.CTCLoss()(
            log_probs.transpose(0, 1),
            targets[row][None],
            out_lengths,
            torch.tensor([len(targets[row])]),
        )
        alone.append(loss)
    assert torch.allclose(mixed, torch.stack(alone).mean(), atol=1e-5)
    assert characters is mixed  # no phoneme loss: the character loss is the whole of it


def test_upsampling_reads_two_frames_of_20_ms_from_each_encoder_frame():
    config = dataclasses.replace(TINY, upsampling=2)
    assert abs(config.frame_shift - 0.02) < 1e-12
    model = ConformerCTC(config).eval()
    model.add_language("eng", 7)
    short = torch.randn(1, 61, 80)
    padded = torch.cat([short, torch.randn(1, 39, 80)], dim=1)
    log_probs, lengths = model(
        torch.cat([padded, torch.randn(1, 100, 80)]), torch.tensor([61, 100]), "eng"
    )
    assert log_probs.shape == (2, 48, 7) and lengths.tolist() == [28, 48]
    alone, alone_lengths = model(short, torch.tensor([61]), "eng")
    assert alone_lengths.tolist() == [28]
    assert torch.allclose(alone[0], log_probs[0, :28], atol=1e-5)
    # at the start each encoder frame is copied into two CTC frames: the 40 ms output twice
    at_40_ms, lengths_40 = model(short, torch.tensor([61]), "eng", upsample=False)
    assert lengths_40.tolist() == [14]
    assert torch.allclose(alone[0, 0::2], at_40_ms[0], atol=1e-6)
    assert torch.allclose(alone[0, 1::2], at_40_ms[0], atol=1e-6)
    # and the layer draws no random numbers: everything else starts as without it
    torch.manual_seed(3)
    with_it = ConformerCTC(config)
    torch.manual_seed(3)
    without = ConformerCTC(TINY)
    assert all(
        torch.equal(p, with_it.state_dict()[name]) for name, p in without.state_dict().items()
    )


def test_rows_tied_by_sound_add_their_sound_row_and_untie_exactly():
    model = ConformerCTC(TINY).eval()
    model.add_language("cmn", 4)
    model.add_language("eng", 3)
    # cmn's rows 2 and 3 sound alike (sound 0); eng is not tied by sound
    model.tie_heads({"cmn": [0, 1, 2, 3], "eng": [0, 1, 4]}, 5, {"cmn": [-1, -1, 0, 0]})
    assert torch.equal(model.sound_head.weight, torch.zeros(2, 16))  # starts as no change
    torch.nn.init.normal_(model.sound_head.weight)
    torch.nn.init.normal_(model.sound_head.bias)
    weight, bias = model._tied_layer("cmn")
    shared, sound = model.shared_head, model.sound_head
    assert torch.equal(weight[:2], shared.weight[:2]) and torch.equal(bias[:2], shared.bias[:2])
    for row in (2, 3):
        assert torch.allclose(weight[row], shared.weight[row] + sound.weight[0])
        assert torch.allclose(bias[row], shared.bias[row] + sound.bias[0])
    assert torch.equal(model._tied_layer("eng")[0], shared.weight[[0, 1, 4]])
    features, lengths = torch.randn(1, 50, 80), torch.tensor([50])
    tied = {lang: model(features, lengths, lang)[0] for lang in ["cmn", "eng"]}
    model.untie_heads()
    assert model.shared_head is None and model.sound_head is None
    for lang in ["cmn", "eng"]:
        assert torch.allclose(model(features, lengths, lang)[0], tied[lang], atol=1e-6)


def test_a_sound_row_learns_from_every_character_that_has_that_sound():
    model = ConformerCTC(TINY)
    model.add_language("cmn", 4)
    model.tie_heads({"cmn": [0, 1, 2, 3]}, 4, {"cmn": [-1, -1, 0, 0]})
    features, lengths = torch.randn(1, 50, 80), torch.tensor([50])
    only_row_3 = [torch.tensor([3, 3])]  # a character the batch never names, and its homophone
    loss, _ = _CtcLoss(model)(features, lengths, ["cmn"], only_row_3, upsample=True)
    loss.backward()
    assert model.sound_head.weight.grad[0].abs().sum() > 0  # the shared sound learns
    assert torch.equal(model.sound_head.weight.grad[1], torch.zeros(16))  # "none" stays zero


def test_the_phoneme_loss_reads_the_chosen_block_and_adds_with_its_weight():
    torch.manual_seed(0)
    model = _tied_pair().train()  # training mode: the way the loss is computed
    head = torch.nn.Linear(16, 5)
    features, lengths = torch.randn(2, 60, 80), torch.tensor([60, 47])
    langs, targets = ["rus", "eng"], [torch.tensor([1, 3]), torch.tensor([2, 1])]
    phonemes = [torch.tensor([1, 2, 4]), torch.tensor([3])]
    objective = _CtcLoss(model, head, phoneme_layer=1, phoneme_weight=0.3)
    for module in model.modules():  # no dropout, to compute by hand
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(module, torch.nn.MultiheadAttention):
            module.dropout = 0.0
    total, characters = objective(features, lengths, langs, targets, True, phonemes)
    first = model.input_projection(
        model.subsampling(((features - model.feature_mean) / model.feature_std)[:, None])
        .permute(0, 2, 1, 3)
        .flatten(2)
    )
    from polyspeech.ctc.conformer import _sinusoids

    x = first + _sinusoids(first.shape[1], 16, first.device)
    frames = model.output_lengths(lengths, upsample=False)
    padding = torch.arange(x.shape[1])[None, :] >= frames[:, None]
    log_probs = head(model.blocks[0](x, padding)).log_softmax(-1)
    by_hand = torch.nn.CTCLoss(reduction="none")(
        log_probs.transpose(0, 1), torch.cat(phonemes), frames, torch.tensor([3, 1])
    )
    expected = characters + 0.3 * (by_hand / torch.tensor([3.0, 1.0])).mean()
    assert torch.allclose(total, expected, atol=1e-5)


def test_pitch_columns_join_after_the_convolutions_on_the_same_frames():
    config = dataclasses.replace(TINY, pitch=True)
    torch.manual_seed(0)
    plain = ConformerCTC(TINY)
    torch.manual_seed(0)
    model = ConformerCTC(config).eval()
    assert config.num_features == 83 and model.feature_mean.shape == (83,)
    for name, weight in plain.named_parameters():  # the other layers start as without pitch
        assert torch.equal(weight, model.get_parameter(name)), name
    model.add_language("cmn", 9)
    for frames in range(7, 60):  # the 1-D convolution's frames are the 2-D ones'
        log_probs, lengths = model(torch.randn(1, frames, 83), torch.tensor([frames]), "cmn")
        assert log_probs.shape[1] == lengths.item() == (frames - 7) // 4 + 1
    features = torch.randn(1, 100, 83)
    other = features.clone()
    other[..., 80:] += 1.0
    lengths = torch.tensor([100])
    assert not torch.allclose(model(features, lengths, "cmn")[0], model(other, lengths, "cmn")[0])


def test_utterance_mean_takes_out_a_fixed_colouring_and_ignores_padding():
    model = ConformerCTC(dataclasses.replace(TINY, utterance_mean=True)).eval()
    model.add_language("eng", 7)
    model.feature_std.uniform_(0.5, 2.0)
    speech = torch.randn(1, 61, 80)
    colouring = torch.linspace(-3.0, 3.0, 80)  # a microphone's tilt, in log-mel
    alone, _ = model(speech, torch.tensor([61]), "eng")
    coloured, _ = model(speech + colouring, torch.tensor([61]), "eng")
    assert torch.allclose(alone, coloured, atol=1e-4)
    padded = torch.cat([speech, torch.full((1, 39, 80), 50.0)], dim=1)
    batched, _ = model(torch.cat([padded, torch.randn(1, 100, 80)]), torch.tensor([61, 100]), "eng")
    assert torch.allclose(alone[0], batched[0, :14], atol=1e-4)
    plain = ConformerCTC(TINY).eval()
    plain.add_language("eng", 7)
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(speech + colouring, torch.tensor([61]), "eng")[0], alone)
