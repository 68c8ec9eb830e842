"""The suspicion model shipped with the package, used until a project calibrates its own.

Fit on the calibration half of pose-gt-dev (see calibration.assign_splits),
pre-filled with the default engine ("detector", BlazePose Heavy, no re-runs: prefill.tta off), over every
point the review queue shows (labelled points and unlabelled joints shown or kept as hidden guesses:
fit_model); the other half is the held-out report. Regenerate with:
    pose-annotator suspicion PROJECT --calibrate --gt GT.json --split cal --export-model model.json
    python -m annotator.review.default_model model.json
The cheap part (people without the engine's signals) is the earlier fit's (near_other + bone): the
cheap selection is unstable between refits on 34 images and can land on a person-level signal alone,
which cannot flag a moved point (tests/test_suspicion.py).
"""
import json

MODEL = json.loads(r'''
{
 "format": "pose-annotator-suspicion-model/1",
 "full": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "point_doubt",
   "engine_gap"
  ],
  "mean": [
   0.191181,
   0.674633
  ],
  "std": [
   0.178511,
   0.607998
  ],
  "coef": [
   1.069349,
   0.259327
  ],
  "intercept": -1.857997,
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
   "fitted_at": "2026-12-03 07:18:38",
   "which": "with the engine's signals (pre-fill without re-runs)"
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
   -2.4505,
   -3.8162,
   -3.8484,
   -2.236,
   -2.4574,
   -3.7716,
   -3.7547,
   -2.166,
   -2.6903,
   -0.461,
   -0.6188,
   -0.9743,
   -2.3435,
   -2.332,
   -2.5694,
   -2.8535,
   -0.5945,
   -1.0198,
   -2.4449,
   -2.2393,
   -2.4165,
   -2.7822,
   0.0047,
   0.0074,
   -0.9025,
   -0.4836,
   -0.5118,
   -0.6117,
   -0.6249,
   -2.3145,
   -2.3106,
   -1.7165,
   -1.8104,
   -1.5556,
   -1.5728
  ],
  "edge_sd": [
   0.3611,
   0.6837,
   0.6151,
   0.6704,
   0.3916,
   0.5995,
   0.5993,
   0.7645,
   0.6164,
   0.4134,
   0.3055,
   0.606,
   0.6014,
   0.6069,
   0.6342,
   0.6022,
   0.2931,
   0.5557,
   0.5867,
   0.5392,
   0.5068,
   0.6024,
   0.1024,
   0.0998,
   0.3665,
   0.4967,
   0.4713,
   0.62,
   0.561,
   0.4665,
   0.3922,
   0.6334,
   0.5983,
   0.4994,
   0.5196
  ],
  "sym_sd": [
   0.2618,
   0.4834,
   0.5802,
   0.8807,
   0.3364,
   0.6787,
   0.5065,
   0.5833,
   0.6532,
   0.6594,
   0.153,
   0.251,
   0.2738,
   0.33,
   0.4211,
   0.3428
  ],
  "n": 156
 },
 "joint_prior": [
  -1.442,
  -1.5414,
  -1.5414,
  -1.5414,
  -1.4498,
  -1.4498,
  -1.4498,
  -0.9153,
  -1.5414,
  -1.442,
  -1.442,
  -1.9218,
  -1.8285,
  -1.4359,
  -1.7411,
  -1.1204,
  -0.798,
  -1.1204,
  -0.798,
  -1.1204,
  -0.798,
  -1.1204,
  -0.798,
  -1.3681,
  -1.4089,
  -1.9218,
  -1.5067,
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
  "fitted_at": "2026-12-02 21:20:19"
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
