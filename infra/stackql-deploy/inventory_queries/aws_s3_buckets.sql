-- name: AWS S3 buckets (us-east-1)
-- provider: aws
-- schedule: 0 */6 * * *
-- target_table: aws_s3_buckets
-- Every bucket in the region; the demo bucket is the one named stackql-inventory-demo-<env>-...
SELECT bucket_name, creation_date, arn, versioning_enabled, region
FROM aws.s3.buckets
WHERE region = 'us-east-1';
