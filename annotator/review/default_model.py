"""The suspicion model shipped with the package, used until a project calibrates its own.

Fit on the calibration half of pose-gt-dev (see calibration.assign_splits),
pre-filled with the default engine ("detector", BlazePose Heavy, re-runs on Full); the other half is the held-out
report. Regenerate with:
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
   "engine_conf",
   "engine_gap"
  ],
  "mean": [
   0.492813,
   0.617227
  ],
  "std": [
   0.208647,
   0.687417
  ],
  "coef": [
   1.774757,
   0.572744
  ],
  "intercept": -2.333103,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 39,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000100667.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000151938.jpg",
     "coco_mini/000000160012.jpg",
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
     "coco_mini/000000501368.jpg",
     "coco_mini/000000538113.jpg",
     "coco_no_person/000000114174.jpg",
     "coco_no_person/000000293474.jpg",
     "coco_no_person/000000328683.jpg",
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
   "n_points": 916,
   "fitted_at": "2026-12-02 06:42:57",
   "which": "with TTA"
  }
 },
 "cheap": {
  "format": "pose-annotator-suspicion/1",
  "features": [
   "person_score",
   "conf",
   "bone",
   "outside"
  ],
  "mean": [
   0.747515,
   0.184758,
   0.645394,
   0.000624
  ],
  "std": [
   0.134728,
   0.316283,
   0.431145,
   0.010869
  ],
  "coef": [
   0.790597,
   0.448156,
   0.408276,
   0.710501
  ],
  "intercept": -1.721081,
  "meta": {
   "trained_on": {
    "gt": "annotations.json",
    "split": "cal",
    "images": 39,
    "files": [
     "coco_mini/000000030752.jpg",
     "coco_mini/000000100667.jpg",
     "coco_mini/000000109313.jpg",
     "coco_mini/000000151938.jpg",
     "coco_mini/000000160012.jpg",
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
     "coco_mini/000000501368.jpg",
     "coco_mini/000000538113.jpg",
     "coco_no_person/000000114174.jpg",
     "coco_no_person/000000293474.jpg",
     "coco_no_person/000000328683.jpg",
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
   "n_points": 916,
   "fitted_at": "2026-12-02 06:42:57",
   "which": "without TTA"
  }
 },
 "stats": {
  "edge_mu": [
   -2.3135,
   -3.785,
   -3.7939,
   -2.1924,
   -2.3394,
   -3.7987,
   -3.7751,
   -2.2253,
   -2.6448,
   -0.3865,
   -0.5509,
   -0.8947,
   -2.3835,
   -2.3591,
   -2.5676,
   -2.8439,
   -0.5226,
   -0.9105,
   -2.3658,
   -2.2031,
   -2.4127,
   -2.7758,
   0.0017,
   0.0092,
   -1.0353,
   -0.3425,
   -0.3774,
   -0.4034,
   -0.3904,
   -2.2975,
   -2.2493,
   -1.6428,
   -1.7645,
   -1.484,
   -1.53
  ],
  "edge_sd": [
   0.5186,
   0.7625,
   0.6844,
   1.16,
   0.4672,
   0.8232,
   0.8163,
   0.9554,
   0.7802,
   0.5135,
   0.375,
   0.6523,
   0.668,
   0.6533,
   0.622,
   0.6138,
   0.3945,
   0.6064,
   0.6269,
   0.5818,
   0.5767,
   0.6376,
   0.1236,
   0.1239,
   0.5125,
   0.3221,
   0.3789,
   0.3909,
   0.4529,
   0.5377,
   0.4196,
   0.5955,
   0.6986,
   0.5056,
   0.5233
  ],
  "sym_sd": [
   0.2981,
   0.4706,
   0.5611,
   0.914,
   0.3491,
   0.7202,
   0.5361,
   0.6839,
   0.6758,
   0.5995,
   0.1893,
   0.2499,
   0.2851,
   0.3359,
   0.4105,
   0.3476
  ],
  "n": 176
 },
 "joint_prior": [
  -2.0168,
  -1.9682,
  -1.9682,
  -1.9682,
  -1.7165,
  -1.7165,
  -1.7165,
  -1.5861,
  -1.3878,
  -2.0168,
  -2.0168,
  -1.401,
  -1.6795,
  -1.4436,
  -1.0818,
  -1.2123,
  -0.6266,
  -1.2123,
  -0.6266,
  -1.2123,
  -0.6266,
  -1.2123,
  -0.6266,
  -1.5306,
  -1.4225,
  -1.6547,
  -1.15,
  -1.074,
  -1.2255,
  -1.074,
  -1.2255,
  -1.074,
  -1.2255
 ],
 "meta": {
  "trained_on": {
   "gt": "annotations.json",
   "split": "cal",
   "images": 39,
   "files": [
    "coco_mini/000000030752.jpg",
    "coco_mini/000000100667.jpg",
    "coco_mini/000000109313.jpg",
    "coco_mini/000000151938.jpg",
    "coco_mini/000000160012.jpg",
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
    "coco_mini/000000501368.jpg",
    "coco_mini/000000538113.jpg",
    "coco_no_person/000000114174.jpg",
    "coco_no_person/000000293474.jpg",
    "coco_no_person/000000328683.jpg",
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
  "n_points": 916,
  "fitted_at": "2026-12-02 06:42:57"
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
