"""The AtariARI labels (Anand et al., 2019): which RAM bytes hold which game variable.

Data: ``ATARIARI_LABELS[game][variable] = RAM index`` for the games AtariARI annotates, keyed
by ale-py ROM id, and ``ATARIARI_CATEGORIES[game][variable]``, the variable's category of
AtariARI's summary (Anand et al., 2019, Section 5: agent localisation, small-object
localisation, other localisation, score/clock/lives/display, miscellaneous). The byte probes of
``rmr_dist.evaluation.atari_probes`` read both: their F1 is averaged within each category, then
across the categories (AtariARI's "across_categories_avg").

The categories follow from the variable names by `CATEGORY_RULES` (data, first match wins),
which restate AtariARI's own name rules with one difference: there a name can fall in two
categories (``num_lives_direction``: lives and direction) or in none (``crosshairs_color``),
here every variable is in exactly one (the first rule it matches, else misc).
"""

from __future__ import annotations

import re


def _expand(name: str, indices) -> dict[str, int]:
  """A multi-byte variable as ``name_0, name_1, ...`` (AtariARI's own flattening)."""
  return {f'{name}_{i}': int(v) for i, v in enumerate(indices)}


# RAM variables labelled by AtariARI (Anand et al., 2019, Table 6 and their
# `atariari/benchmark/ram_annotations.py`), re-keyed by ale-py ROM id: {variable: RAM index}.
# Multi-byte variables are split into `name_i` entries, as AtariARI does before probing.
ATARIARI_LABELS: dict[str, dict[str, int]] = {
    'asteroids': {
        'player_x': 73, 'player_y': 74, 'num_lives_direction': 60,
        'player_score_high': 61, 'player_score_low': 62,
        'player_missile_x1': 83, 'player_missile_x2': 84,
        'player_missile_y1': 86, 'player_missile_y2': 87,
        'player_missile1_direction': 89, 'player_missile2_direction': 90,
        **_expand('enemy_asteroids_y', [3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 19]),
        **_expand('enemy_asteroids_x', [21, 22, 23, 24, 25, 26, 27, 30, 31, 32, 33, 34, 35, 36,
                                        37]),
    },
    'battle_zone': {
        'blue_tank_facing_direction': 46, 'blue_tank_size_y': 47, 'blue_tank_x': 48,
        'blue_tank2_facing_direction': 52, 'blue_tank2_size_y': 53, 'blue_tank2_x': 54,
        'num_lives': 58, 'missile_y': 105, 'compass_needles_angle': 84, 'angle_of_tank': 4,
        'left_tread_position': 59, 'right_tread_position': 60, 'crosshairs_color': 108,
        'score': 29,
    },
    'berzerk': {
        'player_x': 19, 'player_y': 11, 'player_direction': 14,
        'player_missile_x': 22, 'player_missile_y': 23, 'player_missile_direction': 21,
        'robot_missile_direction': 26, 'robot_missile_x': 29, 'robot_missile_y': 30,
        'num_lives': 90, 'robots_killed_count': 91, 'game_level': 92,
        'enemy_evilOtto_x': 46, 'enemy_evilOtto_y': 89,
        **_expand('enemy_robots_x', range(65, 73)),
        **_expand('enemy_robots_y', range(56, 65)),
        **_expand('player_score', range(93, 96)),
    },
    'bowling': {
        'ball_x': 30, 'ball_y': 41, 'player_x': 29, 'player_y': 40,
        'frame_number_display': 36, 'score': 33,
        **_expand('pin_existence', range(57, 67)),
    },
    'boxing': {
        'player_x': 32, 'player_y': 34, 'enemy_x': 33, 'enemy_y': 35,
        'enemy_score': 19, 'clock': 17, 'player_score': 18,
    },
    'breakout': {
        'ball_x': 99, 'ball_y': 101, 'player_x': 72, 'blocks_hit_count': 77, 'score': 84,
        **_expand('block_bit_map', range(30)),
    },
    'demon_attack': {
        'level': 62, 'player_x': 22, 'enemy_x1': 17, 'enemy_x2': 18, 'enemy_x3': 19,
        'missile_y': 21, 'enemy_y1': 69, 'enemy_y2': 70, 'enemy_y3': 71, 'num_lives': 114,
    },
    'freeway': {
        'player_y': 14, 'score': 103,
        **_expand('enemy_car_x', range(108, 118)),
    },
    'frostbite': {
        'top_row_iceflow_x': 34, 'second_row_iceflow_x': 33, 'third_row_iceflow_x': 32,
        'fourth_row_iceflow_x': 31, 'enemy_bear_x': 104, 'num_lives': 76,
        'igloo_blocks_count': 77, 'player_x': 102, 'player_y': 100, 'player_direction': 4,
        **_expand('enemy_x', range(84, 88)),
        **_expand('score', [72, 73, 74]),
    },
    'hero': {
        'player_x': 27, 'player_y': 31, 'power_meter': 43, 'room_number': 28,
        'level_number': 117, 'dynamite_count': 50,
        **_expand('score', [56, 57]),
    },
    'montezuma_revenge': {
        'room_number': 3, 'player_x': 42, 'player_y': 43, 'player_direction': 52,
        'enemy_skull_x': 47, 'enemy_skull_y': 46, 'key_monster_x': 44, 'key_monster_y': 45,
        'level': 57, 'num_lives': 58, 'items_in_inventory_count': 61, 'room_state': 62,
        'score_0': 19, 'score_1': 20, 'score_2': 21,
    },
    'ms_pacman': {
        'enemy_sue_x': 6, 'enemy_inky_x': 7, 'enemy_pinky_x': 8, 'enemy_blinky_x': 9,
        'enemy_sue_y': 12, 'enemy_inky_y': 13, 'enemy_pinky_y': 14, 'enemy_blinky_y': 15,
        'player_x': 10, 'player_y': 16, 'fruit_x': 11, 'fruit_y': 17, 'ghosts_count': 19,
        'player_direction': 56, 'dots_eaten_count': 119, 'player_score': 120, 'num_lives': 123,
    },
    'pitfall': {
        'player_x': 97, 'player_y': 105, 'enemy_logs_x': 98, 'enemy_scorpion_x': 99,
        'bottom_of_rope_y': 18, 'clock_sec': 89, 'clock_min': 88,
    },
    'pong': {
        'player_y': 51, 'player_x': 46, 'enemy_y': 50, 'enemy_x': 45,
        'ball_x': 49, 'ball_y': 54, 'enemy_score': 13, 'player_score': 14,
    },
    'private_eye': {
        'player_x': 63, 'player_y': 86, 'room_number': 92, 'player_direction': 58,
        'dove_x': 48, 'dove_y': 39,
        **_expand('clock', [67, 69]),
        **_expand('score', [73, 74]),
    },
    'qbert': {
        'player_x': 43, 'player_y': 67, 'player_column': 35,
        'red_enemy_column': 69, 'green_enemy_column': 105,
    },
    'riverraid': {
        'player_x': 51, 'missile_x': 117, 'missile_y': 50,
        'fuel_meter_high': 55, 'fuel_meter_low': 56,
    },
    'seaquest': {
        'player_x': 70, 'player_y': 97, 'player_direction': 86, 'player_missile_direction': 87,
        'oxygen_meter_value': 102, 'player_missile_x': 103, 'num_lives': 59,
        'divers_collected_count': 62,
        **_expand('enemy_obstacle_x', range(30, 34)),
        **_expand('diver_or_enemy_missile_x', range(71, 75)),
        **_expand('score', [57, 58]),
    },
    'skiing': {
        'player_x': 25, 'clock_m': 104, 'clock_s': 105, 'clock_ms': 106, 'score': 107,
        **_expand('object_y', range(87, 94)),
    },
    'space_invaders': {
        'invaders_left_count': 17, 'player_score': 104, 'num_lives': 73, 'player_x': 28,
        'enemies_x': 26, 'missiles_y': 9, 'enemies_y': 24,
    },
    'tennis': {
        'enemy_x': 27, 'enemy_y': 25, 'enemy_score': 70, 'ball_x': 16, 'ball_y': 17,
        'player_x': 26, 'player_y': 24, 'player_score': 69,
    },
    'venture': {
        'sprite0_y': 20, 'sprite1_y': 21, 'sprite2_y': 22, 'sprite3_y': 23, 'sprite4_y': 24,
        'sprite5_y': 25, 'sprite0_x': 79, 'sprite1_x': 80, 'sprite2_x': 81, 'sprite3_x': 82,
        'sprite4_x': 83, 'sprite5_x': 84, 'player_x': 85, 'player_y': 26, 'current_room': 90,
        'num_lives': 70, 'score_1_2': 71, 'score_3_4': 72,
    },
    'video_pinball': {
        'ball_x': 67, 'ball_y': 68, 'player_left_paddle_y': 98, 'player_right_paddle_y': 102,
        'score_1': 48, 'score_2': 50,
    },
    'yars_revenge': {
        'player_yar_x': 32, 'player_yar_y': 31, 'yar_missile_x': 38, 'yar_missile_y': 37,
        'enemy_qotile_x': 43, 'enemy_qotile_y': 42, 'qotile_missile_x': 47,
        'qotile_missile_y': 46,
    },
}


AGENT_LOC = 'agent_localization'
SMALL_LOC = 'small_object_localization'
OTHER_LOC = 'other_localization'
SCORE_CLOCK_LIVES_DISPLAY = 'score_clock_lives_display'
MISC = 'misc'
CATEGORIES = (AGENT_LOC, SMALL_LOC, OTHER_LOC, SCORE_CLOCK_LIVES_DISPLAY, MISC)

# A position: a name with an `_x`, `_y` or `_z` coordinate (optionally numbered: `enemy_x1`,
# `sprite0_y`, `enemy_car_x_3`) or a `_column`.
_POSITION = r'(_[xyz](\d|_|$)|_column)'

# (category, regular expression searched in the variable name), in order: the first match wins.
CATEGORY_RULES: tuple[tuple[str, str], ...] = (
    (SMALL_LOC, rf'(ball|missile).*{_POSITION}'),  # ball_x, player_missile_y1, yar_missile_x
    (AGENT_LOC, rf'(player|agent).*{_POSITION}'),  # player_x, player_column, player_yar_y
    (OTHER_LOC, _POSITION),  # enemy_x, fruit_y, sprite3_x, blue_tank_size_y, object_y_2
    (SCORE_CLOCK_LIVES_DISPLAY, r'score|clock|lives|meter|display'),  # num_lives, power_meter
    (MISC, r''),  # counts, levels and rooms, directions, bit maps, existence flags, the rest
)


def category(variable: str) -> str:
  """The AtariARI summary category of a (flattened) variable name, by `CATEGORY_RULES`."""
  return next(c for c, pattern in CATEGORY_RULES if re.search(pattern, variable))


# {game: {variable: category}} for every labelled variable.
ATARIARI_CATEGORIES: dict[str, dict[str, str]] = {
    game: {name: category(name) for name in labels} for game, labels in ATARIARI_LABELS.items()}
