-- name: AWS EC2 instances (us-east-1)
-- provider: aws
-- schedule: 0 * * * *
-- target_table: aws_ec2_instances
-- Instances with their VPC and subnet: the demo stack's VPC and subnet show up as vpcId / subnetId values.
SELECT instanceId, instanceType, JSON_EXTRACT(instanceState, '$.Name') AS state, launchTime,
       privateIpAddress, publicIpAddress, vpcId, subnetId
FROM aws.ec2.instances
WHERE region = 'us-east-1';
