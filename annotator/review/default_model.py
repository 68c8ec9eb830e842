"""The suspicion model shipped with the package, used until a project calibrates its own.

Fit on the calibration half of pose-gt-dev (see calibration.assign_splits),
pre-filled with the default engine ("detector", BlazePose Heavy, re-runs on Full), over every point the
review queue shows (labelled points and unlabelled joints shown or kept as hidden guesses: fit_model); the
other half is the held-out report. Regenerate with:
    pose-annotator suspicion PROJECT --calibrate --gt GT.json --split cal --export-model model.json
    python -m annotator.review.default_model model.json
"""
import json

MODEL = json.loads(r'''
{
 "format": "pose-annotator-suspicion-model/1",
 "full": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "point_doubt",
   "engine_gap",
   "tta"
  ],
  "mean": [
   0.197084,
   0.669831,
   0.647581
  ],
  "std": [
   0.180769,
   0.59938,
   0.514036
  ],
  "coef": [
   1.000993,
   0.047871,
   0.262445
  ],
  "intercept": -1.842565,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 36,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000100667.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000151938.jpg",
     "coco_mini/000000172648.jpg",
     "coco_mini/000000181303.jpg",
     "coco_mini/000000183709.jpg",
     "coco_mini/000000211325.jpg",
     "coco_mini/000000214753.jpg",
     "coco_mini/000000256353.jpg",
     "coco_mini/000000370162.jpg",
     "coco_mini/000000463557.jpg",
     "coco_mini/000000482585.jpg",
     "coco_mini/000000488571.jpg",
     "coco_mini/000000538113.jpg",
     "coco_no_person/000000114174.jpg",
     "coco_no_person/000000293474.jpg",
     "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
     "mmpose_coco/000000197388.jpg",
     "mmpose_crowdpose/crowdpose_103319.jpg",
     "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
     "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
     "mmpose_mhp/mhp_10084.jpg",
     "mmpose_mpii/mpii_004645041.jpg",
     "mmpose_mpii/mpii_005808361.jpg",
     "mmpose_ochuman/ochuman_000817.jpg",
     "mmpose_posetrack18/posetrack18_012834_mpii_test__000000.jpg",
     "sg_pose_minicoco/000000009483.jpg",
     "sg_pose_minicoco/000000034246.jpg",
     "sg_pose_minicoco/000000093620.jpg",
     "sg_pose_minicoco/000000122469.jpg",
     "sg_pose_minicoco/000000162415.jpg",
     "sg_pose_minicoco/000000189475.jpg",
     "sg_pose_minicoco/000000231857.jpg",
     "sg_pose_minicoco/000000422836.jpg",
     "sg_pose_minicoco/000000568814.jpg"
    ]
   },
   "n_points": 1319,
   "fitted_at": "2026-12-02 16:30:14",
   "which": "with TTA"
  }
 },
 "cheap": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "near_other",
   "bone"
  ],
  "mean": [
   0.10275,
   0.713962
  ],
  "std": [
   0.226121,
   0.39623
  ],
  "coef": [
   0.377747,
   0.343611
  ],
  "intercept": -1.54871,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 36,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000100667.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000151938.jpg",
     "coco_mini/000000172648.jpg",
     "coco_mini/000000181303.jpg",
     "coco_mini/000000183709.jpg",
     "coco_mini/000000211325.jpg",
     "coco_mini/000000214753.jpg",
     "coco_mini/000000256353.jpg",
     "coco_mini/000000370162.jpg",
     "coco_mini/000000463557.jpg",
     "coco_mini/000000482585.jpg",
     "coco_mini/000000488571.jpg",
     "coco_mini/000000538113.jpg",
     "coco_no_person/000000114174.jpg",
     "coco_no_person/000000293474.jpg",
     "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
     "mmpose_coco/000000197388.jpg",
     "mmpose_crowdpose/crowdpose_103319.jpg",
     "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
     "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
     "mmpose_mhp/mhp_10084.jpg",
     "mmpose_mpii/mpii_004645041.jpg",
     "mmpose_mpii/mpii_005808361.jpg",
     "mmpose_ochuman/ochuman_000817.jpg",
     "mmpose_posetrack18/posetrack18_012834_mpii_test__000000.jpg",
     "sg_pose_minicoco/000000009483.jpg",
     "sg_pose_minicoco/000000034246.jpg",
     "sg_pose_minicoco/000000093620.jpg",
     "sg_pose_minicoco/000000122469.jpg",
     "sg_pose_minicoco/000000162415.jpg",
     "sg_pose_minicoco/000000189475.jpg",
     "sg_pose_minicoco/000000231857.jpg",
     "sg_pose_minicoco/000000422836.jpg",
     "sg_pose_minicoco/000000568814.jpg"
    ]
   },
   "n_points": 1319,
   "fitted_at": "2026-12-02 16:30:14",
   "which": "without TTA"
  }
 },
 "stats": {
  "edge_mu": [
   -2.4521,
   -3.8178,
   -3.8526,
   -2.2452,
   -2.4557,
   -3.7797,
   -3.7392,
   -2.1776,
   -2.6865,
   -0.4613,
   -0.621,
   -0.9778,
   -2.3434,
   -2.3361,
   -2.5763,
   -2.8517,
   -0.5916,
   -1.0259,
   -2.4422,
   -2.238,
   -2.4198,
   -2.7836,
   0.0052,
   0.0078,
   -0.9017,
   -0.4703,
   -0.5099,
   -0.6788,
   -0.6384,
   -2.311,
   -2.3137,
   -1.7113,
   -1.7981,
   -1.5783,
   -1.5726
  ],
  "edge_sd": [
   0.3608,
   0.6794,
   0.6118,
   0.6738,
   0.3901,
   0.5929,
   0.5914,
   0.7482,
   0.6291,
   0.4008,
   0.3049,
   0.6083,
   0.5918,
   0.622,
   0.6446,
   0.5944,
   0.2964,
   0.5549,
   0.587,
   0.5393,
   0.5149,
   0.6197,
   0.1028,
   0.0998,
   0.3676,
   0.5034,
   0.4737,
   0.6437,
   0.5673,
   0.4654,
   0.4018,
   0.6348,
   0.6038,
   0.5006,
   0.5248
  ],
  "sym_sd": [
   0.2625,
   0.4861,
   0.5844,
   0.8855,
   0.3384,
   0.6881,
   0.5049,
   0.5895,
   0.6664,
   0.649,
   0.1535,
   0.2511,
   0.2813,
   0.3341,
   0.4202,
   0.3446
  ],
  "n": 157
 },
 "joint_prior": [
  -1.5219,
  -1.2807,
  -1.2807,
  -1.2807,
  -1.5414,
  -1.5414,
  -1.5414,
  -0.7217,
  -1.7429,
  -1.5219,
  -1.5219,
  -1.9218,
  -1.8285,
  -1.5809,
  -1.7411,
  -1.1792,
  -0.8487,
  -1.1792,
  -0.8487,
  -1.1792,
  -0.8487,
  -1.1792,
  -0.8487,
  -1.3029,
  -1.4089,
  -1.9218,
  -1.4359,
  -1.7411,
  -1.6588,
  -1.7411,
  -1.6588,
  -1.7411,
  -1.6588
 ],
 "meta": {
  "trained_on": {
   "gt": "annotations.json",
   "split": "cal",
   "images": 36,
   "files": [
    "coco_mini/000000030752.jpg",
    "coco_mini/000000100667.jpg",
    "coco_mini/000000109313.jpg",
    "coco_mini/000000151938.jpg",
    "coco_mini/000000172648.jpg",
    "coco_mini/000000181303.jpg",
    "coco_mini/000000183709.jpg",
    "coco_mini/000000211325.jpg",
    "coco_mini/000000214753.jpg",
    "coco_mini/000000256353.jpg",
    "coco_mini/000000370162.jpg",
    "coco_mini/000000463557.jpg",
    "coco_mini/000000482585.jpg",
    "coco_mini/000000488571.jpg",
    "coco_mini/000000538113.jpg",
    "coco_no_person/000000114174.jpg",
    "coco_no_person/000000293474.jpg",
    "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
    "mmpose_coco/000000197388.jpg",
    "mmpose_crowdpose/crowdpose_103319.jpg",
    "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
    "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
    "mmpose_mhp/mhp_10084.jpg",
    "mmpose_mpii/mpii_004645041.jpg",
    "mmpose_mpii/mpii_005808361.jpg",
    "mmpose_ochuman/ochuman_000817.jpg",
    "mmpose_posetrack18/posetrack18_012834_mpii_test__000000.jpg",
    "sg_pose_minicoco/000000009483.jpg",
    "sg_pose_minicoco/000000034246.jpg",
    "sg_pose_minicoco/000000093620.jpg",
    "sg_pose_minicoco/000000122469.jpg",
    "sg_pose_minicoco/000000162415.jpg",
    "sg_pose_minicoco/000000189475.jpg",
    "sg_pose_minicoco/000000231857.jpg",
    "sg_pose_minicoco/000000422836.jpg",
    "sg_pose_minicoco/000000568814.jpg"
   ]
  },
  "n_points": 1319,
  "fitted_at": "2026-12-02 16:30:14"
 }
}
''')

if __name__ == "__main__":
    import sys
    from pathlib import Path
    text = Path(__file__).read_text(encoding="utf-8")
    head = text[:text.index("MODEL = json.loads(")]
    tail = text[text.index("if __name__"):]
    body = json.dumps(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")), indent=1)
    Path(__file__).write_text(head + "MODEL = json.loads(r" + "\'\'\'\n" + body + "\n" + "\'\'\')\n\n" + tail,
                              encoding="utf-8")
