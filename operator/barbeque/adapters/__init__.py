"""The only modules that import boto3, slack_sdk and kubernetes: one small module each."""
