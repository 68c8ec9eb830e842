"""The suspicion model shipped with the package, used until a project calibrates its own.

Fit on the calibration half of pose-gt-dev (see calibration.assign_splits),
pre-filled with the multi-person engine; the other half is the held-out
report. Regenerate with:
    pose-annotator suspicion PROJECT --calibrate --gt GT.json --split cal --export-model model.json
    python -m annotator.suspicion_default model.json
"""
import json

MODEL = json.loads(r'''
{
 "format": "pose-annotator-suspicion-model/1",
 "full": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "tta"
  ],
  "mean": [
   0.403224
  ],
  "std": [
   0.419588
  ],
  "coef": [
   1.347013
  ],
  "intercept": -2.435479,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 20,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000181303.jpg",
     "coco_mini/000000183709.jpg",
     "coco_mini/000000463557.jpg",
     "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
     "mmpose_coco/000000197388.jpg",
     "mmpose_crowdpose/crowdpose_103319.jpg",
     "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
     "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
     "mmpose_mhp/mhp_10084.jpg",
     "mmpose_mpii/mpii_004645041.jpg",
     "mmpose_mpii/mpii_005808361.jpg",
     "mmpose_ochuman/ochuman_000817.jpg",
     "sg_pose_minicoco/000000009483.jpg",
     "sg_pose_minicoco/000000093620.jpg",
     "sg_pose_minicoco/000000122469.jpg",
     "sg_pose_minicoco/000000162415.jpg",
     "sg_pose_minicoco/000000189475.jpg",
     "sg_pose_minicoco/000000568814.jpg"
    ]
   },
   "n_points": 281,
   "fitted_at": "2026-11-22 19:32:31",
   "which": "with TTA"
  }
 },
 "cheap": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "conf"
  ],
  "mean": [
   0.092262
  ],
  "std": [
   0.183521
  ],
  "coef": [
   0.273252
  ],
  "intercept": -1.98019,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 20,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000181303.jpg",
     "coco_mini/000000183709.jpg",
     "coco_mini/000000463557.jpg",
     "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
     "mmpose_coco/000000197388.jpg",
     "mmpose_crowdpose/crowdpose_103319.jpg",
     "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
     "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
     "mmpose_mhp/mhp_10084.jpg",
     "mmpose_mpii/mpii_004645041.jpg",
     "mmpose_mpii/mpii_005808361.jpg",
     "mmpose_ochuman/ochuman_000817.jpg",
     "sg_pose_minicoco/000000009483.jpg",
     "sg_pose_minicoco/000000093620.jpg",
     "sg_pose_minicoco/000000122469.jpg",
     "sg_pose_minicoco/000000162415.jpg",
     "sg_pose_minicoco/000000189475.jpg",
     "sg_pose_minicoco/000000568814.jpg"
    ]
   },
   "n_points": 281,
   "fitted_at": "2026-11-22 19:32:31",
   "which": "without TTA"
  }
 },
 "stats": {
  "edge_mu": [
   -2.5612,
   -3.6889,
   -3.6936,
   -2.714,
   -2.5107,
   -3.6701,
   -3.6375,
   -2.7588,
   -2.3786,
   -0.483,
   -0.614,
   -1.1643,
   -2.0733,
   -2.1327,
   -2.329,
   -2.7442,
   -0.6738,
   -0.861,
   -2.0121,
   -1.9735,
   -2.3271,
   -2.8396,
   -0.0007,
   0.0267,
   -1.0328,
   -0.316,
   -0.3088,
   -0.4061,
   -0.3201,
   -2.1564,
   -2.209,
   -1.3567,
   -1.3005,
   -1.2433,
   -1.1957
  ],
  "edge_sd": [
   0.1841,
   0.4093,
   0.4133,
   0.4697,
   0.2495,
   0.4982,
   0.4207,
   0.4199,
   0.3532,
   0.217,
   0.2143,
   0.7662,
   0.4291,
   0.5387,
   0.4618,
   0.5091,
   0.1985,
   0.4158,
   0.3416,
   0.4213,
   0.5241,
   0.5279,
   0.1025,
   0.095,
   0.2674,
   0.233,
   0.1773,
   0.312,
   0.198,
   0.2982,
   0.3446,
   0.5913,
   0.4052,
   0.3122,
   0.2486
  ],
  "sym_sd": [
   0.3105,
   0.7637,
   0.7893,
   0.688,
   0.3203,
   0.8227,
   0.482,
   0.384,
   0.4917,
   0.6004,
   0.1403,
   0.1502,
   0.1868,
   0.4039,
   0.4023,
   0.148
  ],
  "n": 23
 },
 "joint_prior": [
  -1.9025,
  -1.8061,
  -1.8061,
  -1.8061,
  -1.9025,
  -1.9025,
  -1.9025,
  -1.8826,
  -1.2741,
  -1.9025,
  -1.9025,
  -1.8775,
  -2.1461,
  -2.5144,
  -2.1461,
  -1.6789,
  -2.0713,
  -1.6789,
  -2.0713,
  -1.6789,
  -2.0713,
  -1.6789,
  -2.0713,
  -2.4397,
  -2.4001,
  -1.9905,
  -1.9475,
  -1.5869,
  -1.8555,
  -1.5869,
  -1.8555,
  -1.5869,
  -1.8555
 ],
 "meta": {
  "trained_on": {
   "gt": "annotations.json",
   "split": "cal",
   "images": 20,
   "files": [
    "coco_mini/000000030752.jpg",
    "coco_mini/000000109313.jpg",
    "coco_mini/000000181303.jpg",
    "coco_mini/000000183709.jpg",
    "coco_mini/000000463557.jpg",
    "mmpose_aic/aic_054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg",
    "mmpose_coco/000000197388.jpg",
    "mmpose_crowdpose/crowdpose_103319.jpg",
    "mmpose_humanart_real/humanart_real_acrobatics_000000000590.jpg",
    "mmpose_jhmdb/jhmdb_Frisbee_catch_f_cm_np1_ri_med_0__00001.png",
    "mmpose_mhp/mhp_10084.jpg",
    "mmpose_mpii/mpii_004645041.jpg",
    "mmpose_mpii/mpii_005808361.jpg",
    "mmpose_ochuman/ochuman_000817.jpg",
    "sg_pose_minicoco/000000009483.jpg",
    "sg_pose_minicoco/000000093620.jpg",
    "sg_pose_minicoco/000000122469.jpg",
    "sg_pose_minicoco/000000162415.jpg",
    "sg_pose_minicoco/000000189475.jpg",
    "sg_pose_minicoco/000000568814.jpg"
   ]
  },
  "n_points": 281,
  "fitted_at": "2026-11-22 19:32:31"
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
