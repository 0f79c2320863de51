"""Tests for rmr_dist.evaluation.atari_ram_labels: the AtariARI RAM label table."""

from rmr_dist.evaluation import atari_ram_labels


def test_pong_labels():
  assert atari_ram_labels.ATARIARI_LABELS['pong'] == {
      'player_y': 51, 'player_x': 46, 'enemy_y': 50, 'enemy_x': 45,
      'ball_x': 49, 'ball_y': 54, 'enemy_score': 13, 'player_score': 14}
  for game, labels in atari_ram_labels.ATARIARI_LABELS.items():
    assert all(0 <= i < 128 for i in labels.values()), game
  assert atari_ram_labels.ATARIARI_LABELS['breakout']['block_bit_map_29'] == 29
  assert atari_ram_labels.ATARIARI_LABELS['berzerk']['player_score_2'] == 95


def test_every_variable_has_one_atariari_category():
  for game, labels in atari_ram_labels.ATARIARI_LABELS.items():
    assert set(atari_ram_labels.ATARIARI_CATEGORIES[game]) == set(labels), game
    assert set(atari_ram_labels.ATARIARI_CATEGORIES[game].values()) <= set(
        atari_ram_labels.CATEGORIES), game
  assert atari_ram_labels.ATARIARI_CATEGORIES['pong'] == {
      'player_y': 'agent_localization', 'player_x': 'agent_localization',
      'enemy_y': 'other_localization', 'enemy_x': 'other_localization',
      'ball_x': 'small_object_localization', 'ball_y': 'small_object_localization',
      'enemy_score': 'score_clock_lives_display', 'player_score': 'score_clock_lives_display'}
  category = atari_ram_labels.category
  assert category('player_missile_x1') == 'small_object_localization'  # not the agent's
  assert category('player_column') == 'agent_localization'
  assert category('enemy_asteroids_y_12') == 'other_localization'
  assert category('sprite3_x') == 'other_localization'
  assert category('num_lives') == category('power_meter') == 'score_clock_lives_display'
  assert category('frame_number_display') == 'score_clock_lives_display'
  assert category('block_bit_map_3') == category('player_direction') == 'misc'
  assert category('blocks_hit_count') == category('room_number') == 'misc'
