from setuptools import find_packages, setup

setup(
    name="meteo_assets",
    version="0.1.0",
    description="Dagster code location for the Toulouse Métropole weather-station open data",
    packages=find_packages(exclude=["meteo_assets_tests", "meteo_assets_tests.*"]),
    package_data={"meteo_assets": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        # The dagster integrations pin dagster exactly: this is the set that resolves.
        "dagster==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-duckdb==0.29.27",
        "dagster-duckdb-pandas==0.29.27",
        "duckdb>=1.1",
        "pandas>=2.1,<3",
        "pyarrow>=15",
        "requests>=2.31",
        "urllib3>=2",
    ],
    extras_require={
        "dev": ["dagster-webserver==1.13.27", "pytest>=8"],
    },
)
