"""Tests for rmr_dist.evaluation.atariari_labels: the AtariARI RAM label table."""

from rmr_dist.evaluation import atariari_labels


def test_pong_labels():
  assert atariari_labels.ATARIARI_LABELS['pong'] == {
      'player_y': 51, 'player_x': 46, 'enemy_y': 50, 'enemy_x': 45,
      'ball_x': 49, 'ball_y': 54, 'enemy_score': 13, 'player_score': 14}
  for game, labels in atariari_labels.ATARIARI_LABELS.items():
    assert all(0 <= i < 128 for i in labels.values()), game
  assert atariari_labels.ATARIARI_LABELS['breakout']['block_bit_map_29'] == 29
  assert atariari_labels.ATARIARI_LABELS['berzerk']['player_score_2'] == 95
