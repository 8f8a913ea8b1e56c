"""coincidence"""
