"""The controller machinery, apart from the job queue's story (see README.md here).

ListWatch, the work queue, leader election and the manager that starts and stops them:
what KEDA takes from controller-runtime, written here for measured speed. No business
rule lives in this package; the operator and the console both run on it.
"""
